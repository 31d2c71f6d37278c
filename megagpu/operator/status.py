"""GpuWorkload status pieces: conditions with reasons and their transitions (DESIGN 3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

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
