"""GpuWorkload status pieces: conditions with reasons, phases, policy status (DESIGN 3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from megagpu.core import qpolicy

CONDITIONS = ("Accepted", "Scheduled", "Running", "Completed", "Failed", "Unschedulable")


def now_iso() -> str:
    """The current time in RFC 3339."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    kind: str, status: bool, reason: str, message: str = "", generation: int | None = None
) -> dict[str, Any]:
    """One condition entry."""
    entry: dict[str, Any] = {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": now_iso(),
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    return entry


def merge(existing: list[dict[str, Any]] | None, *updates: dict[str, Any]) -> list[dict[str, Any]]:
    """Conditions with ``updates`` applied; the transition time moves only when status does."""
    by_type = {c["type"]: dict(c) for c in existing or [] if "type" in c}
    for update in updates:
        old = by_type.get(update["type"])
        if old is not None and old.get("status") == update["status"]:
            update = {
                **update,
                "lastTransitionTime": old.get("lastTransitionTime", update["lastTransitionTime"]),
            }
        by_type[update["type"]] = update
    return [by_type[t] for t in CONDITIONS if t in by_type]


def policy_phase(policy: qpolicy.QPolicy) -> str:
    """Exploring while epsilon is high, Converged once rewards are steady, else Exploiting."""
    if policy.epsilon > 2 * policy.params.epsilon_min:
        return "Exploring"
    recent = list(policy.recent_rewards)
    if len(recent) >= 50:
        half = len(recent) // 2
        older, newer = recent[:half], recent[half:]
        if abs(sum(newer) / len(newer) - sum(older) / len(older)) < 0.05:
            return "Converged"
    return "Exploiting"


def policy_status(policy: qpolicy.QPolicy, configmap: str) -> dict[str, Any]:
    """The GpuSchedulingPolicy status for a policy."""
    return {
        "version": policy.version,
        "decisions": policy.decisions,
        "updates": policy.updates,
        "epsilon": round(policy.epsilon, 4),
        "rewardEma": round(policy.reward_ema, 4),
        "recentRewards": [round(r, 4) for r in policy.recent_rewards],
        "phase": policy_phase(policy),
        "lastUpdated": now_iso(),
        "stateConfigMap": configmap,
    }
