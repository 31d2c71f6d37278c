"""How devices scale with the GPU count, learned across models: for the prior and predictions.

``DeviceScaling`` compares devices at one GPU count; ``CountScaling`` compares GPU counts on one
device.

Datasheets rank devices one GPU at a time; with 2 to 8 GPUs a device's interconnect counts as
much (Gavel's lm-bs10 runs on a P100 at 0.94 of a V100 with one GPU and at 0.21 with eight).
So the prior's datasheet speed of a pair is multiplied by a factor learned per group (workload
type and GPU bucket) and device, from every workload key (model, GPU and memory bucket) of that
group measured on two devices or more, after the additive model

    log(throughput / datasheet speed) = s[workload key] + r[group, device]

approximated in one pass: each key's log ratios centred on their mean, summed per device and
divided by their count plus ``SHRINK`` (the least-squares fit when every key was measured on
the same devices, one backfitting step otherwise). A key measured on one device says nothing
of how devices compare and is left out. Kept up to date incrementally (an outcome changes one
key's terms).

Chosen in development (a scratch script, not in benchmarks/results) on design seeds 100-139, 2
draws each, at gavel-0.3: decisions to within 10% of oracle_greedy, median 322 without it and
233 with it (SHRINK 0.3: 248, 3: 255); learned / oracle_greedy at gavel-0.5 and 0.7 (seeds
100-119) 0.835 -> 0.811 and 0.622 -> 0.599. The report seeds' figures are in
benchmarks/results/sim.md.
"""

from __future__ import annotations

import math
from typing import NamedTuple

SHRINK = 1.0
"""Pseudo-count of a factor of 1: one key's evidence moves a factor half-way."""


def group(wkey: str) -> str:
    """The group of a workload key ``type/model/gN/mM``: ``type/gN`` (a model may hold ``/``)."""
    head, gpus, _ = wkey.rsplit("/", 2)
    return f"{head.split('/', 1)[0]}/{gpus}"


class DeviceScaling:
    """Speed factors per (group, device), from the keys measured on several devices."""

    def __init__(self) -> None:
        self._terms: dict[str, dict[str, float]] = {}
        """Workload key -> its centred log ratio per device (keys of two devices or more)."""
        self._sums: dict[tuple[str, str], tuple[float, int]] = {}
        """(group, device) -> (sum of the terms, how many)."""
        self._factors: dict[tuple[str, str], float] = {}
        """(group, device) -> its speed factor (read on every prior estimate, so kept)."""
        self._groups: dict[str, str] = {}
        """Workload key -> its group (read on every prior estimate too)."""

    def update(self, wkey: str, logs: dict[str, float]) -> None:
        """Replace ``wkey``'s terms: ``logs`` is log(throughput / datasheet speed) per device."""
        key_group = self._group(wkey)
        for akey, term in self._terms.pop(wkey, {}).items():
            self._add(key_group, akey, -term, -1)
        if len(logs) < 2:
            return
        mean = sum(logs.values()) / len(logs)
        self._terms[wkey] = {akey: value - mean for akey, value in logs.items()}
        for akey, term in self._terms[wkey].items():
            self._add(key_group, akey, term, 1)

    def _add(self, key_group: str, akey: str, term: float, count: int) -> None:
        total, n = self._sums.get((key_group, akey), (0.0, 0))
        self._sums[(key_group, akey)] = (total + term, n + count)
        self._factors[(key_group, akey)] = math.exp((total + term) / (n + count + SHRINK))

    def factor(self, wkey: str, akey: str) -> float:
        """How much faster device ``akey`` runs ``wkey``'s group than its datasheet says."""
        return self._factors.get((self._group(wkey), akey), 1.0)

    def _group(self, wkey: str) -> str:
        found = self._groups.get(wkey)
        if found is None:
            found = self._groups[wkey] = group(wkey)
        return found


COUNT_SIGMA = 0.5
"""Log spread assumed of a device's scaling between two GPU buckets before any model ran at both
on it: the prior's (x1.65)."""
COUNT_SHRINK = 1.0
"""Pseudo-observations of linear scaling (and of ``COUNT_SIGMA``) in each count scaling. With no
model measured, a first run at a new count is predicted linearly with a spread of
``COUNT_SIGMA * sqrt(1 + 1 / COUNT_SHRINK)`` (0.71), as the linear prior was before it."""


class LogEstimate(NamedTuple):
    """A log quantity (throughput, or a ratio of two) and the variance of its error."""

    value: float
    variance: float


def head_and_count(mkey: str) -> tuple[str, int]:
    """A model key ``type/model/gN`` split into its model head and GPU bucket."""
    head, _, gpus = mkey.rpartition("/g")
    return head, int(gpus)


class CountScaling:
    """How each device's throughput changes between two GPU buckets, learned across models.

    For a pair never run, the same model on the same device at another GPU count says more
    than the same count on another device: a device's multi-GPU scaling is its interconnect's,
    while the gap between devices at one count differs by model (Gavel's P100 runs at 0.19 of a
    V100 at eight GPUs for lm-bs5 and at 1.61 for resnet-50-bs16). On Gavel's table, leaving
    each model out in turn, the log RMSE of eight GPUs on a P100 is 0.16 from its four-GPU run
    on the P100 and 0.50 from its one-GPU run, against 0.64 from its eight-GPU run on a V100
    scaled by the other models' gap (on a K80: 0.06 and 0.33 against 0.56).

    Per (workload type, device, from bucket, to bucket) it keeps the models' log(throughput at
    to / at from): their mean, shrunk toward linear scaling by ``COUNT_SHRINK``, and their
    spread around it, widened toward ``COUNT_SIGMA`` the same way. Kept up to date
    incrementally. Chosen on design seeds 100-199 (a scratch script, not in benchmarks/results;
    2 draws each, gavel-0.3): decisions to within 10% of oracle_greedy, median 233 -> 220 on
    seeds 100-139 and 302 -> 279 on 140-199; the report seeds' figures are in
    benchmarks/results/sim.md.
    """

    def __init__(self) -> None:
        self._logs: dict[tuple[str, str], dict[int, float]] = {}
        """(model head ``type/model``, device) -> log throughput per GPU bucket."""
        self._devices: dict[str, set[str]] = {}
        """Model head -> the devices it has a throughput on (at some GPU count)."""
        self._sums: dict[tuple[str, str, int, int], tuple[int, float, float]] = {}
        """(type, device, from, to) -> (models, sum, sum of squares) of the log ratios."""

    def update(self, mkey: str, akey: str, throughput: float) -> None:
        """Replace the model key's throughput on device ``akey`` (0: none known)."""
        head, gpus = head_and_count(mkey)
        if gpus == 0:
            return  # CPU runs: no GPU count to scale
        logs = self._logs.setdefault((head, akey), {})
        kind = head.split("/", 1)[0]
        if gpus in logs:
            self._add(kind, akey, logs, gpus, logs.pop(gpus), -1)
        if throughput > 0:
            self._add(kind, akey, logs, gpus, math.log(throughput), 1)
            logs[gpus] = math.log(throughput)
        if logs:
            self._devices.setdefault(head, set()).add(akey)
        else:
            self._devices.get(head, set()).discard(akey)

    def _add(
        self, kind: str, akey: str, logs: dict[int, float], gpus: int, value: float, sign: int
    ) -> None:
        for other, theirs in logs.items():
            for key, ratio in (
                ((kind, akey, other, gpus), value - theirs),
                ((kind, akey, gpus, other), theirs - value),
            ):
                n, total, squares = self._sums.get(key, (0, 0.0, 0.0))
                self._sums[key] = (n + sign, total + sign * ratio, squares + sign * ratio**2)

    def estimate(self, mkey: str, akey: str) -> LogEstimate | None:
        """The model key's log throughput on ``akey`` from its runs there at other GPU counts.

        From the count whose scaling to this one is known best (the nearest on a tie): one
        model's runs at several counts are not independent evidence of the next. None when it
        has none.
        """
        head, gpus = head_and_count(mkey)
        logs = self._logs.get((head, akey))
        if gpus == 0 or not logs:
            return None
        kind = head.split("/", 1)[0]
        found = [
            (self._scaling(kind, akey, other, gpus), abs(math.log(gpus / other)), value)
            for other, value in logs.items()
            if other != gpus
        ]
        if not found:
            return None
        ratio, _, value = min(found, key=lambda f: (f[0].variance, f[1]))
        return LogEstimate(value + ratio.value, ratio.variance)

    def estimates(self, mkey: str) -> dict[str, LogEstimate]:
        """``estimate`` on every device the model ran on at another GPU count."""
        head, _ = head_and_count(mkey)
        found = {akey: self.estimate(mkey, akey) for akey in self._devices.get(head, ())}
        return {akey: e for akey, e in found.items() if e is not None}

    def _scaling(self, kind: str, akey: str, source: int, target: int) -> LogEstimate:
        """log(throughput at ``target`` / at ``source``) on ``akey``; one model's variance."""
        n, total, squares = self._sums.get((kind, akey, source, target), (0, 0.0, 0.0))
        mean = (total + COUNT_SHRINK * math.log(target / source)) / (n + COUNT_SHRINK)
        scatter = max(squares - 2 * mean * total + n * mean**2, 0.0)
        spread = (scatter + COUNT_SHRINK * COUNT_SIGMA**2) / (n + COUNT_SHRINK)
        return LogEstimate(mean, spread * (1 + 1 / (n + COUNT_SHRINK)))
