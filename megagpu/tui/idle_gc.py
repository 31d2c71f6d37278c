"""Full garbage collections while no key is being pressed.

CPython runs a full (generation 2) collection once enough objects have survived the younger
ones. With 2,000 workloads and 1,600 GPUs on screen one took up to 0.2 s, and when it landed on a
key press it held that key's redraw past 100 ms. While the dashboard runs, full collections wait
until no key came for ``IDLE_S``; they are as frequent as before, only moved. Younger
generations are collected as usual.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

IDLE_S = 1.0
"""A full collection runs only this long after the last key."""
NEVER = 2**30
"""A generation-2 threshold that automatic collection never reaches."""


class IdleCollector:
    """Defers full collections to idle moments (``start``, then ``key`` and ``tick``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_key = -IDLE_S
        self._saved: tuple[int, int, int] | None = None

    def start(self) -> None:
        """Turn automatic full collections off (the younger generations keep theirs)."""
        if self._saved is None:
            self._saved = gc.get_threshold()
            gc.set_threshold(self._saved[0], self._saved[1], NEVER)

    def stop(self) -> None:
        """Give the collector its own thresholds back."""
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    def key(self) -> None:
        """A key came now."""
        self._last_key = self._clock()

    def tick(self) -> bool:
        """Collect fully if one is due and no key came for ``IDLE_S``; whether it did."""
        if self._saved is None or self._clock() - self._last_key < IDLE_S:
            return False
        if gc.get_count()[2] < self._saved[2]:
            return False  # not due yet: as many younger collections as the threshold asks
        gc.collect()
        return True
