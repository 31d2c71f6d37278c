"""Which devices of which node are held, by whom: the one source of free-device counts.

Holders are pods seen by the informer (with their assigned devices) and reservations made by
bind before the informer sees the pod. Thread-safe: informer threads and the event loop share it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from megagpu.core import fleet, model

RESERVATION_TTL_S = 60.0
"""A tentative hold from prioritize lapses after this long if no bind confirms it."""


class Layout(NamedTuple):
    """One consistent view of the node set for a request."""

    fleet: fleet.Fleet
    positions: dict[str, int]
    """Node name -> index in ``fleet`` (read-only)."""
    free: np.ndarray
    """Free slots per node of ``fleet`` (a copy)."""
    generation: int
    """The ledger's generation when taken (see ``Ledger.generation``)."""


class Ledger:
    """Free devices per node, as a numpy array aligned with the fleet's node order."""

    def __init__(
        self, nodes: Sequence[model.Node] = (), clock: Callable[[], float] = time.monotonic
    ):
        self._lock = threading.Lock()
        self._clock = clock
        self._holders: dict[str, dict[str, tuple[int, ...]]] = {}
        self._tentative: dict[str, tuple[str, int, float]] = {}
        self._tentative_on: dict[str, int] = {}
        """Devices held tentatively, per node (the sum over ``_tentative``)."""
        self._next_lapse = float("inf")
        """No tentative hold lapses before this time."""
        self.generation = 0
        """Counts changes of the node set or of any hold: equal generations, equal layouts."""
        self.set_nodes(nodes)

    def set_nodes(self, nodes: Sequence[model.Node]) -> None:
        """Replace the node set (rare: nodes joined, left or changed)."""
        with self._lock:
            self.fleet = fleet.Fleet.build(list(nodes))
            self._index = {n.name: i for i, n in enumerate(self.fleet.nodes)}
            self._recount()
            self.generation += 1

    def _recount(self) -> None:
        self.free = np.asarray([n.slots for n in self.fleet.nodes], dtype=np.int64)
        for node in set(self._holders) | set(self._tentative_on):
            self._recount_node(node)

    def _recount_node(self, node: str) -> None:
        index = self._index.get(node)
        if index is None:
            return
        held = self._held_count(self._holders.get(node, {}))
        self.free[index] = self.fleet.nodes[index].slots - held - self._tentative_on.get(node, 0)

    def layout(self) -> Layout:
        """The fleet, its name positions and free slots, taken together.

        Consistent even when the informer replaces the node set meanwhile; expired tentative
        holds lapse first.
        """
        with self._lock:
            now = self._clock()
            if now > self._next_lapse:
                lapsed = [uid for uid, (_, _, expires) in self._tentative.items() if expires < now]
                for node in {self._drop_tentative(uid) for uid in lapsed}:
                    self._recount_node(node)
                self.generation += bool(lapsed)
                self._next_lapse = min(
                    (e for _, _, e in self._tentative.values()), default=float("inf")
                )
            return Layout(self.fleet, self._index, self.free.copy(), self.generation)

    def _drop_tentative(self, uid: str) -> str:
        """Forget ``uid``'s tentative hold; returns its node (not recounted yet)."""
        node, count, _ = self._tentative.pop(uid)
        left = self._tentative_on[node] - count
        if left:
            self._tentative_on[node] = left
        else:
            del self._tentative_on[node]
        return node

    @staticmethod
    def _held_count(holders: dict[str, tuple[int, ...]]) -> int:
        return sum(max(len(devices), 1) for devices in holders.values())

    def node(self, name: str) -> model.Node | None:
        """The node called ``name``, if known."""
        index = self._index.get(name)
        return None if index is None else self.fleet.nodes[index]

    def hold(self, uid: str, node: str, devices: tuple[int, ...]) -> None:
        """Record that pod ``uid`` holds ``devices`` on ``node`` (replacing what it held)."""
        with self._lock:
            touched = self._release(uid)
            self._holders.setdefault(node, {})[uid] = devices
            for name in touched | {node}:
                self._recount_node(name)
            self.generation += 1

    def tentative(self, uid: str, node: str, count: int) -> None:
        """Count ``count`` devices of ``node`` as taken until bind confirms or the TTL ends."""
        with self._lock:
            touched = self._release(uid)
            expires = self._clock() + RESERVATION_TTL_S
            self._tentative[uid] = (node, count, expires)
            self._tentative_on[node] = self._tentative_on.get(node, 0) + count
            self._next_lapse = min(self._next_lapse, expires)
            for name in touched | {node}:
                self._recount_node(name)
            self.generation += 1

    def release(self, uid: str) -> None:
        """Forget everything pod ``uid`` held."""
        with self._lock:
            touched = self._release(uid)
            for name in touched:
                self._recount_node(name)
            self.generation += bool(touched)

    def _release(self, uid: str) -> set[str]:
        """Drop ``uid``'s holds; returns the nodes whose counts changed (not recounted yet)."""
        touched = set()
        if uid in self._tentative:
            touched.add(self._drop_tentative(uid))
        for node, holders in self._holders.items():
            if holders.pop(uid, None) is not None:
                touched.add(node)
        return touched

    def take(self, uid: str, node: str, count: int) -> tuple[int, ...] | None:
        """Atomically assign ``count`` free device indices of ``node`` to ``uid`` (None: too few).

        A pod that already holds devices on this node keeps them (bind is idempotent).
        """
        with self._lock:
            mine = self._holders.get(node, {}).get(uid)
            if mine is not None and len(mine) == count:
                return mine
            known = self.node(node)
            if known is None:
                return None
            others = {d for u, ds in self._holders.get(node, {}).items() if u != uid for d in ds}
            free = [d for d in range(known.devices) if d not in others]
            if count > 0 and len(free) < count:
                return None
            devices = tuple(free[:count])
            touched = self._release(uid)
            self._holders.setdefault(node, {})[uid] = devices
            for name in touched | {node}:
                self._recount_node(name)
            self.generation += 1
            return devices

    def holders(self, node: str) -> dict[str, tuple[int, ...]]:
        """Pods holding devices of ``node``."""
        with self._lock:
            return dict(self._holders.get(node, {}))
