"""Metrics of runs and the simulator report (DESIGN 9.6): every number finite."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from megagpu.core import predict
from megagpu.sim import simulator

SCHEMA = "megagpu.sim.report/v1"
WINDOW = 100
HOLD = 500
WITHIN = 1.1
METRICS = (
    "avg_jct_s",
    "median_jct_s",
    "p95_jct_s",
    "p99_jct_s",
    "makespan_s",
    "p95_queue_s",
    "utilization",
    "deadline_attainment",
    "decisions_to_within_10pct",
    "n_jobs",
)
EXTRA = ("derived_share", "prediction_mdape", "waited_share")
"""Beyond DESIGN 9.6: share of derived rows, median absolute percentage error of the predicted
run times (null without predictions), share of jobs a policy kept pending."""


def _in_order(run: simulator.RunResult) -> list[simulator.JobRecord]:
    return sorted(run.records, key=lambda r: r.order)


def decisions_to_within(
    run: simulator.RunResult, oracle: simulator.RunResult, *, ratio: float = WITHIN
) -> int | None:
    """Decisions until the last 100 jobs' mean JCT holds within ``ratio`` x the oracle's.

    The window must stay within for the next 500 decisions (or to the end of the run).
    """
    oracle_jct = {r.uid: r.finish_s - r.arrival_s for r in oracle.records}
    ordered = [r for r in _in_order(run) if r.uid in oracle_jct]
    if len(ordered) < WINDOW:
        return None
    mine = np.asarray([r.finish_s - r.arrival_s for r in ordered])
    theirs = np.asarray([oracle_jct[r.uid] for r in ordered])
    kernel = np.ones(WINDOW)
    ok = np.convolve(mine, kernel, "valid") <= ratio * np.convolve(theirs, kernel, "valid")
    # ok[i] covers decisions i .. i+WINDOW-1; look for HOLD consecutive windows that are ok.
    bad = np.flatnonzero(~ok)
    for start in range(len(ok)):
        later_bad = bad[bad >= start]
        if len(later_bad) == 0 or later_bad[0] >= start + HOLD:
            return int(start + WINDOW)
    return None


def metrics(run: simulator.RunResult, oracle: simulator.RunResult | None) -> dict[str, Any]:
    """The report's numbers for one run."""
    if not run.records:
        raise ValueError("no job finished: nothing fits the cluster")
    jct = np.asarray([r.finish_s - r.arrival_s for r in run.records])
    queue = np.asarray([r.start_s - r.arrival_s for r in run.records])
    busy = sum(r.slots * (r.finish_s - r.start_s) for r in run.records)
    first = min(r.arrival_s for r in run.records)
    deadlines = [r for r in run.records if r.deadline_missed is not None]
    return {
        "avg_jct_s": float(jct.mean()),
        "median_jct_s": float(np.median(jct)),
        "p95_jct_s": float(np.percentile(jct, 95)),
        "p99_jct_s": float(np.percentile(jct, 99)),
        "makespan_s": float(max(r.finish_s for r in run.records) - first),
        "p95_queue_s": float(np.percentile(queue, 95)),
        "utilization": float(min(busy / run.available_slot_seconds, 1.0))
        if run.available_slot_seconds > 0
        else 0.0,
        "deadline_attainment": _attainment(deadlines),
        "decisions_to_within_10pct": decisions_to_within(run, oracle) if oracle else None,
        "n_jobs": len(run.records),
        "derived_share": float(np.mean([r.derived for r in run.records])),
        "prediction_mdape": predict.mdape(
            [(r.predicted_s, r.finish_s - r.start_s) for r in run.records]
        ),
        "waited_share": float(np.mean([r.waited_s > 0 for r in run.records])),
    }


def _attainment(records: Sequence[simulator.JobRecord]) -> float | None:
    return None if not records else float(np.mean([not r.deadline_missed for r in records]))


def ci95(values: Sequence[float]) -> list[float]:
    """95% confidence interval of the mean (normal approximation; a point for one value)."""
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2:
        return [mean, mean]
    half = 1.96 * float(arr.std(ddof=1)) / math.sqrt(len(arr))
    return [mean - half, mean + half]


def summarize(per_policy: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Mean of each metric across seeds, with the 95% CI of the average JCT."""
    out: dict[str, dict[str, Any]] = {}
    for policy, runs in per_policy.items():
        row: dict[str, Any] = {}
        for key in (*METRICS, *EXTRA):
            values = [r[key] for r in runs if r[key] is not None]
            if not values:
                row[key] = None
            elif key in ("n_jobs", "decisions_to_within_10pct"):
                row[key] = int(round(float(np.mean(values))))
            else:
                row[key] = float(np.mean(values))
        row["ci95_avg_jct_s"] = ci95([r["avg_jct_s"] for r in runs])
        out[policy] = row
    return out


def report(
    *,
    command: str,
    preset: str | None,
    load: float | None,
    seeds: Sequence[int],
    runs: Sequence[tuple[str, int, dict[str, Any]]],
) -> dict[str, Any]:
    """The report document of DESIGN 9.6."""
    per_policy: dict[str, list[dict[str, Any]]] = {}
    for policy, _, values in runs:
        per_policy.setdefault(policy, []).append(values)
    doc = {
        "schema": SCHEMA,
        "command": command,
        "preset": preset,
        "load": load,
        "seeds": list(seeds),
        "policies": list(per_policy),
        "summary": summarize(per_policy),
        "runs": [{"policy": p, "seed": s, **v} for p, s, v in runs],
    }
    _check_finite(doc)
    return doc


def _check_finite(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("report holds a non-finite number")
    if isinstance(value, dict):
        for v in value.values():
            _check_finite(v)
    elif isinstance(value, list):
        for v in value:
            _check_finite(v)
