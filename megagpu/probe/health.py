"""Device health with hysteresis.

A device that failed stays unhealthy until it has read healthy, at every re-probe, for a
configurable time, so that a flapping GPU is not used again at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from megagpu.probe import node


class HealthGate:
    """Applied to every reading; remembers which devices failed and since when they recovered."""

    def __init__(self, recover_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if recover_s < 0:
            raise ValueError("the recovery time must not be negative")
        self.recover_s = recover_s
        self._clock = clock
        self._failed: set[tuple[str, str]] = set()
        self._healthy_since: dict[tuple[str, str], float] = {}

    def apply(self, reading: node.NodeReading) -> node.NodeReading:
        """Mark recovering devices unhealthy, with how long they have been healthy so far."""
        now = self._clock()
        for backend in reading.backends:
            for device in backend.devices:
                key = (backend.name, device.uuid or str(device.index))
                if not device.healthy:
                    self._failed.add(key)
                    self._healthy_since.pop(key, None)
                    continue
                if key not in self._failed:
                    continue
                since = self._healthy_since.setdefault(key, now)
                if now - since >= self.recover_s:
                    self._failed.discard(key)
                    del self._healthy_since[key]
                else:
                    device.healthy = False
                    device.reason = (
                        f"recovering: healthy for {now - since:.0f} s of the "
                        f"{self.recover_s:.0f} s required"
                    )
        return reading
