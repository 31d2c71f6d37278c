"""How each device scales with the GPU count, learned across models, for the benchmark prior.

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
