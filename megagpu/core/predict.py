"""Predicted run times: a workload's believed size over its class's learned throughput.

A prediction is the median run time with its spread (the standard deviation of
log(actual / predicted)). The size comes from ``core.sizes`` (declared, else the class's
history); the throughput from the Q-policy: the pair's own average, else the model's, else the
benchmark prior, times the device's drift. The prior is calibrated by the class's observed
throughputs on other devices, else by its model's at other GPU counts, scaled as other models'
scaled (``scaling.CountScaling``). Where the model ran on the device at other GPU counts, those
runs so scaled are weighed with the prior calibrated at this count, or replace the prior
calibrated by them. No size, or no throughput in work units (nothing observed for the model),
gives None.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np

from megagpu.core import calibration, fleet, model, qpolicy

OBSERVED_SIGMA = 0.1
"""Spread of a pair's throughput average after one reported outcome (shrinks as 1/sqrt(seen)):
runs of one class on one device differ by a few percent, stragglers by more."""
MODEL_SIGMA = 0.25
"""Spread when only another memory bucket of the same model ran on the device."""
PRIOR_SIGMA = 0.5
"""Spread of the calibrated benchmark prior (x1.65): datasheets rank devices, not models."""
OTHER_COUNTS_SIGMA = math.hypot(PRIOR_SIGMA, 0.5)
"""Spread of a prior calibrated at other GPU counts of the model: the prior's, and as much
again for linear scaling (Gavel's jobs run 0.5 to 1 of it per GPU, per device)."""


def throughput(
    policy: qpolicy.QPolicy, wkey: str, mkey: str, akey: str, scale: calibration.Scale | None = None
) -> tuple[float, float] | None:
    """(learned throughput in work units/s, its log spread), or None when none is known.

    ``scale``: ``policy.scale(wkey, mkey)`` when the caller has it already.
    """
    drift = math.exp(policy.drift.get(akey, 0.0))
    cell = policy.workloads.get(wkey, {}).get(akey)
    if cell is not None and cell.throughput > 0:
        seen = max(cell.seen, qpolicy.DECLARED_WEIGHT)
        return cell.throughput * drift, OBSERVED_SIGMA / math.sqrt(seen)
    cell = policy.models.get(mkey, {}).get(akey)
    if cell is not None and cell.throughput > 0:
        return cell.throughput * drift, MODEL_SIGMA
    scale = scale or policy.scale(wkey, mkey)
    if not scale.observed:
        return None
    estimate = scale.best * math.exp(policy.prior_value(wkey, mkey, akey, scale))
    sigma = OTHER_COUNTS_SIGMA if scale.other_counts else PRIOR_SIGMA
    counts = policy.count_scaling().estimate(mkey, akey)
    if counts is None:
        return estimate * drift, sigma
    spread = max(math.sqrt(counts.variance), MODEL_SIGMA)
    if scale.other_counts:  # the prior is calibrated by these estimates: this device's own
        return math.exp(counts.value) * drift, spread
    # at this count on other devices, and on this device at other counts: weighed by the
    # inverse of their variances
    weight = 1 / sigma**2 + 1 / spread**2
    log_speed = (math.log(estimate) / sigma**2 + counts.value / spread**2) / weight
    return math.exp(log_speed) * drift, 1 / math.sqrt(weight)


class Predictions(NamedTuple):
    """A workload's predicted run time per action of one fleet, under one policy version."""

    seconds: np.ndarray
    """Median run time per action (NaN where unknown)."""
    sigma: np.ndarray
    """Log spread of the run time: of the size and of the speed."""
    speed_sigma: np.ndarray
    """Log spread of the speed alone: what tells one device from another (the size's error is
    the same on every device)."""
    source: str
    """Where the size came from (``declared``, ``history``, ``none``)."""

    def on(self, f: fleet.Fleet, row: int) -> model.Prediction | None:
        """The prediction on fleet row ``row`` (None when there is none)."""
        aid = int(f.row_action_id[row])
        if math.isnan(self.seconds[aid]):
            return None
        return model.Prediction(float(self.seconds[aid]), float(self.sigma[aid]), self.source)


class Speeds(NamedTuple):
    """A class's learned throughput per action of one fleet, under one policy version."""

    per_s: np.ndarray
    """Work units per second per action (NaN where unknown)."""
    sigma: np.ndarray
    """Log spread of that throughput."""


def action_speeds(policy: qpolicy.QPolicy, wkey: str, mkey: str, f: fleet.Fleet) -> Speeds:
    """``throughput`` of the class (``policy.keys``) on each action of ``f``."""
    policy.know(f)
    per_s = np.full(len(f.action_keys), np.nan)
    sigma = np.full(len(f.action_keys), np.nan)
    scale = policy.scale(wkey, mkey)
    for aid, akey in enumerate(f.action_keys):
        found = throughput(policy, wkey, mkey, akey, scale)
        if found is not None:
            per_s[aid], sigma[aid] = found
    return Speeds(per_s, sigma)


def action_run_times(
    policy: qpolicy.QPolicy,
    workload: model.Workload,
    f: fleet.Fleet,
    speeds: Callable[[str, str], Speeds] | None = None,
) -> Predictions:
    """The predicted run time of ``workload`` on each action of ``f``.

    ``speeds``: ``action_speeds`` of a class by its (workload key, model key), from a caller
    that keeps them for this policy version and fleet.
    """
    policy.know(f)
    wkey, mkey = policy.keys(workload)
    size = policy.sizes.size(mkey, workload)
    if size is None:
        unknown = np.full(len(f.action_keys), np.nan)
        return Predictions(unknown, unknown.copy(), unknown.copy(), "none")
    found = speeds(wkey, mkey) if speeds is not None else action_speeds(policy, wkey, mkey, f)
    seconds = size.amount / found.per_s
    sigma = np.array([math.hypot(size.sigma, s) for s in found.sigma.tolist()])
    sigma[np.isnan(found.per_s)] = np.nan  # an unknown speed: no spread, whatever the size's
    return Predictions(seconds, sigma, found.sigma.copy(), size.source)


def run_times(
    policy: qpolicy.QPolicy, workload: model.Workload, f: fleet.Fleet, rows: Iterable[int]
) -> list[model.Prediction | None]:
    """The predicted run time of ``workload`` on each fleet row (None where there is none)."""
    predicted = action_run_times(policy, workload, f)
    return [predicted.on(f, int(row)) for row in rows]


def percentage_error(predicted_s: float, actual_s: float) -> float:
    """Absolute percentage error of a predicted run time (100 = off by the whole run time)."""
    if actual_s <= 0:
        raise ValueError(f"actual run time must be > 0, got {actual_s!r}")
    return 100.0 * abs(predicted_s - actual_s) / actual_s


def mdape(pairs: Sequence[tuple[float | None, float]]) -> float | None:
    """Median absolute percentage error over (predicted, actual) pairs that have a prediction."""
    errors = [percentage_error(p, a) for p, a in pairs if p is not None and a > 0]
    return float(np.median(errors)) if errors else None


QUEUE_EDGES_S = (60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0, 3 * 86400.0)
"""Upper edges of the queue's size buckets (a minute ... three days; the last is open): kube-
scheduler orders its queue by priority, so the operator gives each bucket a PriorityClass."""
QUEUE_BUCKETS = len(QUEUE_EDGES_S) + 1
UNKNOWN_BUCKET = (QUEUE_BUCKETS - 1) / 2
"""Where a workload with no prediction queues: the middle, so that saying nothing about a
job's size neither jumps the queue nor sends it to the back."""


def best_run_time(
    policy: qpolicy.QPolicy, workload: model.Workload, actions: Iterable[str] | None = None
) -> float | None:
    """Predicted run time of ``workload`` on the fastest device pair it can use.

    ``actions``: the pairs to consider (default: every pair the policy knows); only those of
    the workload's backends count, and CPU pairs exactly for a workload without GPUs (as the
    Q-policy's). None with no size, or no speed known on any of them.
    """
    wkey, mkey = policy.keys(workload)
    size = policy.sizes.size(mkey, workload)
    if size is None:
        return None
    scale = policy.scale(wkey, mkey)
    best = None
    for akey in policy.benchmarks if actions is None else actions:
        backend = akey.split("/", 1)[0]
        if backend not in workload.backends or (backend == "cpu") != (workload.gpus == 0):
            continue
        found = throughput(policy, wkey, mkey, akey, scale)
        if found is not None and found[0] > 0:
            seconds = size.amount / found[0]
            best = seconds if best is None else min(best, seconds)
    return best


def queue_bucket(seconds: float | None) -> float:
    """The queue's size bucket of a predicted run time: 0 (a minute or less) first."""
    if seconds is None or not math.isfinite(seconds):
        return UNKNOWN_BUCKET
    return float(bisect.bisect_left(QUEUE_EDGES_S, seconds))
