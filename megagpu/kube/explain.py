"""What ``megagpu explain`` and the TUI detail view say about one GpuWorkload (plain dicts in)."""

from __future__ import annotations

import math
from typing import Any

from megagpu.core import waiting

Obj = dict[str, Any]


def predicted(record: Obj) -> str:
    """The record's prediction as text (``, predicted 2.0 h (+-10%)``), else empty."""
    seconds, sigma = record.get("predictedSeconds"), record.get("predictedSigma")
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return ""
    spread = ""
    if isinstance(sigma, int | float) and math.isfinite(sigma) and 0 <= sigma < 5:
        spread = f" (+-{100 * (math.exp(sigma) - 1):.0f}%)"
    return f", predicted {waiting.duration(float(seconds))}{spread}"


def event_time(event: Obj) -> str:
    """The newest timestamp an Event carries (RFC 3339 text sorts by time)."""
    series = event.get("series") or {}
    return str(
        series.get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _versus(decision: Obj, st: Obj) -> str:
    """How the run time compared with its prediction (`` (ran 2.00x the predicted 10 s)``)."""
    seconds, actual = decision.get("predictedSeconds"), st.get("durationSeconds")
    if not isinstance(seconds, int | float) or not isinstance(actual, int | float):
        return ""
    if not seconds > 0 or not math.isfinite(actual / seconds):
        return ""
    return f" (ran {actual / seconds:.2f}x the predicted {waiting.duration(float(seconds))})"


def lines(gw: Obj, events: list[Obj], last_events: int = 10) -> list[str]:
    """Decision, alternatives, reward, conditions and the newest Events of ``gw``."""
    meta, spec, st = gw.get("metadata") or {}, gw.get("spec") or {}, gw.get("status") or {}
    decision = st.get("decision") or {}
    out = [
        f"{meta.get('namespace')}/{meta.get('name')}: {spec.get('workloadType')} "
        f"{spec.get('model')} x{spec.get('gpus', 1)}  phase {st.get('phase', '-')}  "
        f"attempts {st.get('attempts', 0)}"
    ]
    if decision:
        out.append(
            f"placed on {st.get('node')} ({st.get('backend')}, devices "
            f"{st.get('device') or '-'}) by {decision.get('mode')}: "
            f"{decision.get('reason')}  [policy v{decision.get('policyVersion')}]"
        )
        chosen_q = (decision.get("qValues") or {}).get(st.get("node") or "")
        out.append(
            f"  chosen   {st.get('node')}: score {decision.get('score')}"
            + (f", Q {chosen_q:+.3f}" if isinstance(chosen_q, int | float) else "")
            + predicted(decision)
        )
        for alt in decision.get("alternatives") or []:
            out.append(
                f"  instead  {alt['node']}: score {alt['score']}, Q {alt['qValue']:+.3f}"
                + predicted(alt)
            )
    else:
        out.append("not placed yet")
    if "reward" in st:
        out.append(
            f"outcome: {st.get('durationSeconds')} s{_versus(decision, st)}, "
            f"reward {st['reward']:+.3f}"
        )
    work = st.get("work") or {}
    if isinstance(work.get("amount"), int | float):
        out.append(f"  size {work['amount']:g} {work.get('unit') or ''} ({work.get('source')})")
    elif work.get("source") == "none":
        out.append("  size unknown: its run time was not read as a speed")
    for c in st.get("conditions") or []:
        out.append(f"  {c['type']}={c['status']} {c.get('reason', '')}: {c.get('message', '')}")
    for e in sorted(events, key=event_time)[-last_events:]:
        out.append(f"  event {e.get('type')} {e.get('reason')}: {e.get('message')}")
    return out
