"""When the short benchmarks run: at start, then every ``every_s`` seconds per device.

Never while the device is busy: the result would measure its tenant, and slow it down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from megagpu.probe import readings

BUSY = 0.1
"""Utilization above which a device counts as busy."""

Benchmark = Callable[[int], readings.Benchmarks]
log = logging.getLogger(__name__)


class Unavailable(RuntimeError):
    """A backend's benchmark cannot run on this node (the message says why and what to do)."""


class BenchmarkSchedule:
    """Keeps the latest result per (backend, device) and runs what is due."""

    def __init__(
        self,
        benchmarks: dict[str, Benchmark],
        every_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_s <= 0:
            raise ValueError("the benchmark period must be positive")
        self._benchmarks, self.every_s, self._clock = benchmarks, every_s, clock
        self.results: dict[tuple[str, int], readings.Benchmarks] = {}
        self.unavailable: dict[str, str] = {}
        """Backend -> why its benchmark cannot run here (tried once, logged once)."""
        self._ran_at: dict[tuple[str, int], float] = {}

    def apply(self, backend: readings.Backend) -> readings.Backend:
        """Run the due benchmarks of ``backend``'s idle devices; attach the weakest result."""
        run = self._benchmarks.get(backend.name)
        simulated = backend.driver_version == "simulated"  # no device to measure
        if run is None or not backend.available or simulated or backend.name in self.unavailable:
            return backend
        now = self._clock()
        for device in backend.devices:
            key = (backend.name, device.index)
            due = key not in self._ran_at or now - self._ran_at[key] >= self.every_s
            busy = device.utilization is not None and device.utilization > BUSY
            if due and not busy and device.healthy:
                try:
                    self.results[key] = run(device.index)
                except Unavailable as e:
                    self.unavailable[backend.name] = str(e)
                    log.warning("%s benchmarks are off on this node: %s", backend.name, e)
                    return backend
                self._ran_at[key] = now
        mine = [r for (name, _), r in self.results.items() if name == backend.name]
        if mine:
            backend.benchmarks = min(mine, key=lambda r: r.fp16_tflops or r.fp32_tflops or 0.0)
        return backend
