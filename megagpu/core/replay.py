"""Experience replay: a ring buffer sampled uniformly at random."""

from __future__ import annotations

import random
from typing import NamedTuple


class Transition(NamedTuple):
    """One learned outcome, stored compactly (the reward is recomputed at replay time)."""

    workload_key: str
    model_key: str
    action_key: str
    context: int
    throughput: float
    """Net of the device's drift; 0 for a failure or a success of unknown size."""
    succeeded: bool
    deadline_missed: bool


class ReplayBuffer:
    """Fixed-capacity ring buffer; the oldest item is overwritten first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: list[Transition] = []
        self._next = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Transition) -> None:
        """Store ``item``, overwriting the oldest once full."""
        if len(self._items) < self.capacity:
            self._items.append(item)
        else:
            self._items[self._next] = item
        self._next = (self._next + 1) % self.capacity

    def sample(self, batch: int, rng: random.Random) -> list[Transition]:
        """``batch`` items drawn uniformly with replacement (empty when the buffer is)."""
        if not self._items:
            return []
        return [self._items[rng.randrange(len(self._items))] for _ in range(batch)]

    def items(self) -> list[Transition]:
        """All items, oldest first."""
        return self._items[self._next :] + self._items[: self._next]

    def reset(self) -> None:
        """Forget everything."""
        self._items.clear()
        self._next = 0
