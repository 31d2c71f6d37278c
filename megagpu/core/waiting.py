"""Waiting as a decision: keep a workload pending for a busy device that finishes it sooner.

A busy candidate's predicted finish is when its node has enough free slots (from the predicted
remaining run times of what runs there, after the jobs ahead in the queue that fit it took
theirs) plus the workload's run time there. The workload waits for the busy candidate with the
earliest predicted finish when, measured from now,

    log(best free finish / busy finish) > margin + caution * sigma

(sigma: the log spread of the busy finish, at most ``max_sigma``), and only for a node
predicted to free within the wait left: the caller's bound (``wait_left_s``: the maximum wait
and the deadline), past which the workload is placed whatever the predictions say, and the
workload's own, ``wait_share`` of its predicted run time on the best free node in all (waiting
longer, it would have finished there already). A workload with no prediction on any free
candidate never waits.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from megagpu.core import fleet, model

OVERDUE_SHARE = 0.1
"""A running job past its predicted run time is assumed to need this share of it again."""

RunTimes = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Fleet rows -> (predicted seconds, log spread) per row; NaN where there is no prediction."""
PredictRunning = Callable[[fleet.Running], "model.Prediction | None"]
"""The run time of a job that runs now, when it carries no prediction of its own."""


@dataclass(frozen=True)
class Settings:
    """When waiting pays (the simulator's and the extender's defaults)."""

    max_wait_s: float = 30 * 86400.0
    """Longest a workload is kept pending for a busy device, counted from its first wait,
    whatever the predictions say. Philly-like training jobs run hours to weeks, so a week-long
    job waiting days for a device three times faster pays; ``wait_share`` bounds each job by
    its own length. 30 days, on design seeds 100-104 (8 draws each, with placement by sampled
    speeds): learned / oracle_greedy at gavel-0.3, 0.5 and 0.7 was 1.020, 0.914 and 0.686 with
    one day, 0.935, 0.839 and 0.640 with 7 days, 0.926, 0.804 and 0.623 with 30 days."""
    wait_share: float = 1.0
    """A workload waits at most this share of its predicted run time on the best free node, in
    all: past that, that node would have finished it. On the same seeds, 1 changed nothing
    measurable against no such bound (0.926, 0.805, 0.622)."""
    margin: float = 0.1
    """Log gain (x1.1) the busy finish must beat the free one by: waiting has costs the model
    leaves out (another job may take the device first)."""
    caution: float = 0.5
    """Standard deviations of the busy finish added to the margin: uncertain predictions
    (unknown sizes) must be right by more before a job waits on them. 0.5, on design seeds
    100-104 (4 to 8 draws each, with sampled placement and the 30-day bound): learned /
    oracle_greedy at gavel-0.3, 0.5 and 0.7 was 0.921, 0.797 and 0.618 with 1, 0.908, 0.785 and
    0.619 with 0.5; philly-noisy 0.823 and 0.805; philly-unsized learned = learned_nowait."""

    max_sigma: float = 1.0
    """No wait on a busy finish whose log spread is above this (x2.7): a size estimated from
    a heavy-tailed class's history (Philly's run times span x1000) says too little about one
    job, and a wrong wait costs more than the margin can cover."""
    max_busy_nodes: int = 16
    """Busy nodes examined per decision: those of the shortest predicted run time, the most
    free slots first. Bounds a decision's cost on a large cluster (a node's free time walks
    what runs there and the queue ahead); the 17th equally fast node rarely frees sooner."""

    def __post_init__(self) -> None:
        for name in ("max_wait_s", "wait_share", "margin", "caution", "max_sigma"):
            model.check_finite(f"waiting.{name}", getattr(self, name))
        if self.wait_share < 0:
            raise model.ValidationError("waiting.wait_share must be >= 0")
        if self.max_busy_nodes < 0:
            raise model.ValidationError("waiting.max_busy_nodes must be >= 0")


ORACLE = Settings(margin=0.0, caution=0.0)
"""For predictions that are the truth (the simulator's ``earliest_finish``)."""


class Assessment(NamedTuple):
    """Predicted run times, starts and the wait decision for one workload.

    Rows are the view's free rows, then the busy rows that were considered (those whose run
    time could pay for a wait). Unknown values are NaN.
    """

    wait: bool
    row: int
    """The busy row waited for; else the free row with the earliest predicted finish (-1 when
    no free row has a prediction)."""
    reason: str
    rows: np.ndarray
    free: np.ndarray
    """True for a free row."""
    start_s: np.ndarray
    """Predicted start: now for a free row, when its node frees for a busy one."""
    run_s: np.ndarray
    sigma: np.ndarray
    """Log spread of ``run_s``."""
    size_source: str

    def start(self, row: int) -> float | None:
        """The predicted start on ``row`` (None when unknown)."""
        hits = np.flatnonzero(self.rows == row)
        if len(hits) == 0 or math.isnan(self.start_s[hits[0]]):
            return None
        return float(self.start_s[hits[0]])

    def prediction(self, row: int) -> model.Prediction | None:
        """The predicted run time on ``row`` (None when there is none)."""
        hits = np.flatnonzero(self.rows == row)
        if len(hits) == 0 or math.isnan(self.run_s[hits[0]]):
            return None
        i = int(hits[0])
        return model.Prediction(float(self.run_s[i]), float(self.sigma[i]), self.size_source)


def node_free_at(
    now_s: float,
    free_slots: int,
    need: int,
    running: Sequence[fleet.Running],
    predict_running: PredictRunning,
    ahead: Sequence[fleet.Running] = (),
) -> tuple[float, float] | None:
    """(when the node has ``need`` free slots for us, the spread of that in seconds), or None.

    Slots free as running jobs end (a job of unknown run time never frees its slots). The jobs
    ``ahead`` in the queue go first: whenever slots free, each that fits takes them, in queue
    order, for its predicted run time (one of unknown run time is left out).
    """
    return _free_at(now_s, free_slots, need, running, predict_running, ahead)[0]


def _free_at(
    now_s: float,
    free_slots: int,
    need: int,
    running: Sequence[fleet.Running],
    predict_running: PredictRunning,
    ahead: Sequence[fleet.Running],
) -> tuple[tuple[float, float] | None, float]:
    """``node_free_at``, and a clock up to which it gives the same answer (-inf: none).

    The answer depends on the clock only through a job past its predicted end less
    ``OVERDUE_SHARE``, an answer of now, or jobs ahead (they start when slots free).
    """
    events: list[tuple[float, float, int]] = []
    holds = -math.inf if ahead else math.inf
    for job in running:
        p = job.prediction or predict_running(job)
        if p is not None:
            due, overdue = job.started_s + p.seconds, OVERDUE_SHARE * p.seconds
            events.append((max(due, now_s + overdue), p.sigma * p.seconds, job.slots))
            holds = min(holds, _last_on_time(due, overdue))
    demands = []
    for job in ahead:
        p = job.prediction or predict_running(job)
        if p is not None:
            demands.append((job.slots, p))
    heapq.heapify(events)
    have, t, spread = free_slots, now_s, 0.0
    while True:
        waiting = []
        for slots, p in demands:
            if have >= slots:
                have -= slots
                heapq.heappush(events, (t + p.seconds, p.sigma * p.seconds, slots))
            else:
                waiting.append((slots, p))
        demands = waiting
        if have >= need:
            # an answer of now, or one taken with a job overdue, holds at this clock only
            return (t, spread), (holds if now_s < t and now_s <= holds else -math.inf)
        if not events:
            return None, holds
        t, spread, slots = heapq.heappop(events)
        have += slots


def _last_on_time(due: float, overdue: float) -> float:
    """A clock up to which a job is not overdue: ``clock + overdue <= due`` in floats.

    The latest such clock, to a rounding step.
    """
    clock = due - overdue
    while clock + overdue > due:  # a rounding step or two at most
        clock = math.nextafter(clock, -math.inf)
    return clock


class FreeTimes:
    """Nodes' ``node_free_at`` answers kept between decisions, for a caller that asks often.

    An answer is reused while the caller hands the same ``running`` object for the node (which
    it never changes: a new one when the jobs there change), the same free slots and need, no
    job queued ahead, and the clock has not passed the point where the answer would change
    (nor was past it when the answer was taken). Reused, it is exactly what
    ``node_free_at`` gives. The caller clears it when the predictions of running jobs change.
    Why: at 1,000 nodes, with sixteen busy nodes of eight jobs to examine (bench-extender's
    state), the extender's filter took 0.83 ms at the median with it and 0.98 without (the two
    alternated in one process, 400 filters each; 2-core VM, 2026-12-07).
    """

    def __init__(self) -> None:
        self._kept: dict[
            int, tuple[Sequence[fleet.Running], int, int, float, tuple[float, float] | None]
        ] = {}

    def get(
        self,
        node: int,
        now_s: float,
        free_slots: int,
        need: int,
        running: Sequence[fleet.Running],
        predict_running: PredictRunning,
        ahead: Sequence[fleet.Running] = (),
    ) -> tuple[float, float] | None:
        """``node_free_at`` for fleet node ``node``, reused where it holds.

        Never with jobs ``ahead``: they start when slots free, so the answer moves with the
        clock.
        """
        kept = self._kept.get(node)
        if (
            kept is not None
            and not ahead
            and kept[0] is running
            and kept[1] == free_slots
            and kept[2] == need
            and now_s <= kept[3]
        ):
            return kept[4]
        found, holds = _free_at(now_s, free_slots, need, running, predict_running, ahead)
        self._kept[node] = (running, free_slots, need, holds, found)
        return found

    def clear(self) -> None:
        """Forget every answer."""
        self._kept.clear()


def duration(seconds: float) -> str:
    """A duration in words: seconds, minutes or hours."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan(
    workload: model.Workload,
    view: fleet.View,
    settings: Settings,
    run_times: RunTimes,
    predict_running: PredictRunning,
    size_source: str,
    free_times: FreeTimes | None = None,
) -> Assessment:
    """Predictions for every free row and the busy rows worth a wait, and the decision.

    ``free_times``: busy nodes' free times kept between calls (None: computed afresh).
    """
    f, now = view.fleet, view.now_s
    rows = np.asarray(view.rows, dtype=np.int64)
    run_s, sigma = run_times(rows)
    known = ~np.isnan(run_s)
    start = np.full(len(rows), now)
    free = np.ones(len(rows), dtype=bool)
    if not known.any():
        return Assessment(
            False,
            -1,
            "no prediction: placed without waiting",
            rows,
            free,
            start,
            run_s,
            sigma,
            size_source,
        )
    best = int(np.argmin(np.where(known, run_s, np.inf)))
    best_s = float(run_s[best])
    best_node = view.node_of(int(rows[best])).name
    placing = f"predicted {duration(best_s)} on {best_node}"
    busy = np.asarray(view.busy_rows, dtype=np.int64)
    limit = min(view.wait_left_s, settings.wait_share * best_s - view.waited_s)
    if limit <= 0 or len(busy) == 0:
        return Assessment(
            False, int(rows[best]), placing, rows, free, start, run_s, sigma, size_source
        )
    b_run, b_sigma = run_times(busy)
    with np.errstate(invalid="ignore"):
        # a wait can only pay where the run alone beats the best free finish by the margin
        gain = np.log(best_s / b_run) - settings.margin - settings.caution * b_sigma
        promising = np.flatnonzero((gain > 0) & (b_sigma <= settings.max_sigma))
    nodes_free = view.free_slots[f.row_node[busy[promising]]]
    promising = promising[np.lexsort((-nodes_free, b_run[promising]))][: settings.max_busy_nodes]
    busy, b_run, b_sigma = busy[promising], b_run[promising], b_sigma[promising]
    b_start = np.full(len(busy), np.nan)
    b_spread = np.zeros(len(busy))
    need = max(workload.gpus, 1)
    by_node: dict[int, tuple[float, float] | None] = {}
    for i, row in enumerate(busy):
        node = int(f.row_node[row])
        if node not in by_node:
            at = (
                now,
                int(view.free_slots[node]),
                need,
                view.running.get(node, ()),
                predict_running,
                view.ahead.get(node, ()),
            )
            by_node[node] = node_free_at(*at) if free_times is None else free_times.get(node, *at)
        found = by_node[node]
        if found is not None and found[0] - now <= limit:
            b_start[i], b_spread[i] = found
    finish = b_start - now + b_run
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.hypot(b_sigma, b_spread / finish)
        ok = np.log(best_s / finish) > settings.margin + settings.caution * spread
        ok &= spread <= settings.max_sigma
    arrays = (
        np.concatenate([rows, busy]),
        np.concatenate([free, np.zeros(len(busy), dtype=bool)]),
        np.concatenate([start, b_start]),
        np.concatenate([run_s, b_run]),
        np.concatenate([sigma, b_sigma]),
    )
    if not ok.any():
        return Assessment(False, int(rows[best]), placing, *arrays, size_source)
    pick = int(np.argmin(np.where(ok, finish, np.inf)))
    node = view.node_of(int(busy[pick])).name
    reason = (
        f"waiting for {node}: predicted finish {duration(float(finish[pick]))} (frees in "
        f"{duration(float(b_start[pick] - now))}) vs {duration(best_s)} on {best_node}"
    )
    return Assessment(True, int(busy[pick]), reason, *arrays, size_source)
