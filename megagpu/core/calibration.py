"""The benchmark prior of the Q-policy, calibrated by the throughputs it has seen.

A pair never run is valued by the device's datasheet speed for the workload's profile
(``core.prior``), times how the device scales with the GPU count (``core.scaling``), scaled so
that the pairs the workload key (else its model) did run match their observed throughputs, else
those of the model at other GPU counts, scaled linearly. ``QPolicy`` inherits it: it reads the
policy's tables, profiles and benchmarks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from megagpu.core import prior, scaling

if TYPE_CHECKING:
    from megagpu.core.qpolicy import Table

MEMO_ENTRIES = 4096
"""Entries a memo holds before it starts over (the prior's speeds, per-action values)."""
UNMEASURED = (1.0, 1.0, 1.0)
"""(fp16 TFLOP/s, fp32 TFLOP/s, GB/s) the prior assumes of a device whose speed is unknown: one
the policy has not seen, or whose nodes published no benchmarks (0 means not measured, never a
speed of 0: that prior would make every measured device a million times faster)."""


class Scale(NamedTuple):
    """The prior's calibration for one workload key: Q = log(scale * estimate / best)."""

    scale: float
    best: float
    observed: bool
    """Whether throughputs were observed (else ``best`` is the fastest usable estimate)."""
    other_counts: bool = False
    """Observed only for the model at other GPU counts, scaled linearly to this one: enough
    to predict a first multi-GPU run's size class, not how each device scales."""


class BenchmarkPrior:
    """The prior's methods; the Q-policy holds the state they read."""

    workloads: Table
    models: Table
    profiles: dict[str, tuple[str, float, str, str]]
    benchmarks: dict[str, tuple[float, float, float, float]]
    _speeds: dict[tuple[Any, ...], float]
    _scaling: scaling.DeviceScaling | None
    _counts: scaling.CountScaling | None

    def device_scaling(self) -> scaling.DeviceScaling:
        """How devices scale with the GPU count, built from ``workloads`` when it is not kept.

        A loaded Q-state builds it at once (``qstate``), off a scheduler's request path;
        new benchmarks build it again on first use (about 1 us per measured pair).
        """
        if self._scaling is None:
            self._scaling = scaling.DeviceScaling()
            for key in self.workloads:
                self._scaling.update(key, self._measured_logs(key))
        return self._scaling

    def count_scaling(self) -> scaling.CountScaling:
        """How each device scales between GPU counts, built from ``models`` when it is not kept.

        A loaded Q-state builds it at once, as it does the device scaling.
        """
        if self._counts is None:
            self._counts = scaling.CountScaling()
            for mkey, cells in self.models.items():
                for akey, cell in cells.items():
                    self._counts.update(mkey, akey, cell.throughput)
        return self._counts

    def _know_benchmarks(self, akey: str, measured: tuple[float, float, float, float]) -> None:
        """Take a device's benchmarks; new ones drop the device scaling (built again on use)."""
        if self.benchmarks.get(akey) != measured:
            self.benchmarks[akey] = measured
            self._scaling = None

    def _measured_again(self, wkey: str, mkey: str, akey: str) -> None:
        """Keep both scalings up to date once the pair's throughput averages moved."""
        if self._scaling is not None:
            self._scaling.update(wkey, self._measured_logs(wkey))
        if self._counts is not None:
            self._counts.update(mkey, akey, self.models[mkey][akey].throughput)

    def _estimate(self, wkey: str, akey: str) -> float:
        """The prior's speed of a pair: the datasheet's, times how the device scales."""
        return self._datasheet_speed(wkey, akey) * self.device_scaling().factor(wkey, akey)

    def _measured_logs(self, wkey: str) -> dict[str, float]:
        """log(throughput / datasheet speed) per device ``wkey`` has a throughput on."""
        return {
            akey: math.log(cell.throughput / self._datasheet_speed(wkey, akey))
            for akey, cell in self.workloads.get(wkey, {}).items()
            if cell.throughput > 0
        }

    def _datasheet_speed(self, wkey: str, akey: str) -> float:
        inputs = (
            self.profiles.get(wkey, ("training", 0.7, "fp16", "")),
            self.benchmarks.get(akey, (1.0, *UNMEASURED)),
        )
        speed = self._speeds.get(inputs)
        if speed is None:
            (kind, intensity, precision, _), (eff, fp16, fp32, gbps) = inputs
            speed = float(prior.relative_speed(kind, intensity, eff, fp16, fp32, gbps, precision))
            if len(self._speeds) >= MEMO_ENTRIES:
                self._speeds.clear()
            self._speeds[inputs] = speed
        return speed

    def _calibration(self, table: Table, key: str, wkey: str) -> tuple[float, float] | None:
        """(scale, best known throughput) at one level, or None when nothing was observed."""
        seen = {a: c.throughput for a, c in table.get(key, {}).items() if c.throughput > 0}
        if not seen:
            return None
        logs = [math.log(t / self._estimate(wkey, a)) for a, t in seen.items()]
        scale = math.exp(sum(logs) / len(logs))
        best = max(
            seen.get(a, scale * self._estimate(wkey, a)) for a in self._usable(wkey) | set(seen)
        )
        return scale, best

    def _usable(self, wkey: str) -> set[str]:
        """Known action keys that can run the workload key (cpu exactly when it has no GPUs)."""
        backends = self.profiles.get(wkey, ("", 0.0, "", ""))[3].split(",")
        cpu_only = "/g0/" in wkey
        return {
            a
            for a in self.benchmarks
            if (a.startswith("cpu/") == cpu_only)
            and (not backends[0] or a.split("/", 1)[0] in backends)
        }

    def _calibrated(self, wkey: str, mkey: str) -> tuple[float, float] | None:
        """(scale, best known throughput) for the workload key, else its model, else None."""
        return self._calibration(self.workloads, wkey, wkey) or self._calibration(
            self.models, mkey, wkey
        )

    def _other_counts(self, wkey: str, mkey: str) -> tuple[float, float] | None:
        """(scale, best) from the model's throughputs at other GPU counts, scaled to this one.

        Scaled per device as other models' throughputs scaled there (``scaling.CountScaling``;
        linearly until a model ran at both counts), so that every device's prior is calibrated
        alike. Runs without GPUs (``g0``, on CPU pairs) neither give nor take: CPU and GPU
        speeds differ by far more than any scaling.
        """
        seen = self.count_scaling().estimates(mkey)
        usable = self._usable(wkey)
        if not seen or not usable:
            return None
        scale = math.exp(
            sum(e.value - math.log(self._estimate(wkey, a)) for a, e in seen.items()) / len(seen)
        )
        return scale, max(scale * self._estimate(wkey, a) for a in usable)

    def reference(self, wkey: str, mkey: str) -> float:
        """Best known throughput for the workload key (model level when the key is new)."""
        found = self._calibrated(wkey, mkey)
        return found[1] if found else 0.0

    def scale(self, wkey: str, mkey: str) -> Scale:
        """How the prior of this workload key is scaled (the same for all of its actions)."""
        found = self._calibrated(wkey, mkey)
        if found is not None:
            return Scale(*found, observed=True)
        found = self._other_counts(wkey, mkey)
        if found is not None:
            return Scale(*found, observed=True, other_counts=True)
        best = max((self._estimate(wkey, a) for a in self._usable(wkey)), default=0.0)
        return Scale(1.0, best, observed=False)

    def prior_value(self, wkey: str, mkey: str, akey: str, scale: Scale | None = None) -> float:
        """Prior Q: log of the calibrated benchmark speed over the best known throughput.

        Unobserved, the best is the fastest benchmark estimate among usable actions and this one.
        ``scale``: ``self.scale(wkey, mkey)`` when the caller has it already.
        """
        s = scale or self.scale(wkey, mkey)
        estimate = self._estimate(wkey, akey)
        best = s.best if s.observed else max(s.best, estimate)
        return math.log(s.scale * estimate / best)
