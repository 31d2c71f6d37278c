"""Which devices of which node are held, by whom: the one source of free-device counts.

Holders are pods seen by the informer (with their assigned devices) and reservations made by
bind before the informer sees the pod. Thread-safe: informer threads and the event loop share it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from megagpu.core import fleet, model

REBUILD_MIN_CHANGES = 8
"""A batch of more changes than this and an eighth of the fleet is laid out at once."""
RESERVATION_TTL_S = 60.0
"""A tentative hold from prioritize lapses after this long if no bind confirms it."""


class Layout(NamedTuple):
    """One consistent view of the node set for a request."""

    fleet: fleet.Fleet
    positions: dict[str, int]
    """Node name -> index in ``fleet`` (read-only)."""
    free: np.ndarray
    """Free devices per node of ``fleet``, for GPU workloads (a copy)."""
    cpu_free: np.ndarray
    """Free CPU slots per node of ``fleet``, for zero-GPU workloads (a copy)."""
    generation: int
    """The ledger's generation when taken (see ``Ledger.generation``)."""


class Ledger:
    """Free devices and CPU slots per node, as numpy arrays aligned with the fleet's node order.

    A holder with no devices is a zero-GPU pod: it takes one of the node's CPU slots
    (``model.CPU_SLOTS_PER_NODE``), never a device.
    """

    def __init__(
        self, nodes: Sequence[model.Node] = (), clock: Callable[[], float] = time.monotonic
    ):
        self._lock = threading.Lock()
        self._clock = clock
        self._holders: dict[str, dict[str, tuple[int, ...]]] = {}
        self._held_on: dict[str, str] = {}
        """Pod UID -> the node of its hold in ``_holders`` (a release costs one lookup, not a
        walk over every node that holds pods: 200 of them took 30 µs of each prioritize)."""
        self._tentative: dict[str, tuple[str, int, float]] = {}
        self._tentative_on: dict[str, tuple[int, int]] = {}
        """(devices, CPU slots) held tentatively, per node (the sums over ``_tentative``)."""
        self._next_lapse = float("inf")
        """No tentative hold lapses before this time."""
        self.generation = 0
        """Counts changes of the node set or of any hold: equal generations, equal layouts."""
        self.set_nodes(nodes)

    def set_nodes(self, nodes: Sequence[model.Node]) -> None:
        """Replace the whole node set (startup, snapshot mode)."""
        with self._lock:
            self.fleet = fleet.Fleet.build(list(nodes))
            self._index = {n.name: i for i, n in enumerate(self.fleet.nodes)}
            self._recount()
            self.generation += 1

    def apply(self, changes: Mapping[str, model.Node | None]) -> None:
        """Add, replace (a Node) or remove (None) nodes by name; unchanged nodes cost nothing.

        Each change costs its node (and a copy of the fleet's arrays); a batch that touches
        more than an eighth of the fleet (a list after a 410 Gone) is laid out once instead.
        """
        with self._lock:
            real = {name: node for name, node in changes.items() if node != self.node(name)}
            if not real:
                return
            if len(real) > max(REBUILD_MIN_CHANGES, len(self.fleet.nodes) // 8):
                kept = {n.name: n for n in self.fleet.nodes}
                kept.update(real)
                self.fleet = fleet.Fleet.build([n for n in kept.values() if n is not None])
                self._index = {n.name: i for i, n in enumerate(self.fleet.nodes)}
                self._recount()
            else:
                for name, node in real.items():
                    self._apply_one(name, node)
            self.generation += 1

    def _apply_one(self, name: str, node: model.Node | None) -> None:
        index = self._index.get(name)
        if node is None and index is not None:
            last = len(self.fleet.nodes) - 1
            moved = self.fleet.nodes[last].name
            self.fleet = self.fleet.removed(index)
            self._index = dict(self._index)  # layouts handed out keep the old positions
            del self._index[name]
            self.free, self.cpu_free = self.free.copy(), self.cpu_free.copy()
            if moved != name:
                self._index[moved] = index
                self.free[index], self.cpu_free[index] = self.free[last], self.cpu_free[last]
            self.free, self.cpu_free = self.free[:last], self.cpu_free[:last]
        elif node is not None and index is None:
            self.fleet = self.fleet.replaced(len(self.fleet.nodes), node)
            self._index = {**self._index, name: len(self.fleet.nodes) - 1}
            self.free = np.append(self.free, 0)
            self.cpu_free = np.append(self.cpu_free, 0)
            self._recount_node(name)
        elif node is not None and index is not None:
            self.fleet = self.fleet.replaced(index, node)
            self._recount_node(name)

    def _recount(self) -> None:
        self.free = np.asarray([n.devices for n in self.fleet.nodes], dtype=np.int64)
        self.cpu_free = np.full(len(self.fleet.nodes), model.CPU_SLOTS_PER_NODE, dtype=np.int64)
        for node in set(self._holders) | set(self._tentative_on):
            self._recount_node(node)

    def _recount_node(self, node: str) -> None:
        index = self._index.get(node)
        if index is None:
            return
        known = self.fleet.nodes[index]
        holders = self._holders.get(node, {}).values()
        held = {d for devices in holders for d in devices}.intersection(known.device_indices)
        cpu_jobs = sum(not devices for devices in holders)
        gpus, cpus = self._tentative_on.get(node, (0, 0))
        self.free[index] = known.devices - len(held) - gpus
        self.cpu_free[index] = model.CPU_SLOTS_PER_NODE - cpu_jobs - cpus

    def layout(self) -> Layout:
        """The fleet, its name positions and free devices and slots, taken together.

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
            return Layout(
                self.fleet, self._index, self.free.copy(), self.cpu_free.copy(), self.generation
            )

    def _drop_tentative(self, uid: str) -> str:
        """Forget ``uid``'s tentative hold; returns its node (not recounted yet)."""
        node, gpus, _ = self._tentative.pop(uid)
        self._add_tentative(node, gpus, -1)
        return node

    def _add_tentative(self, node: str, gpus: int, sign: int) -> None:
        held_gpus, held_cpus = self._tentative_on.get(node, (0, 0))
        left = (held_gpus + sign * gpus, held_cpus + sign * (gpus == 0))
        if left == (0, 0):
            self._tentative_on.pop(node, None)
        else:
            self._tentative_on[node] = left

    def node(self, name: str) -> model.Node | None:
        """The node called ``name``, if known (lock-free, checked against the current fleet)."""
        index, nodes = self._index.get(name), self.fleet.nodes
        if index is None or index >= len(nodes) or nodes[index].name != name:
            return None
        return nodes[index]

    def hold(self, uid: str, node: str, devices: tuple[int, ...]) -> None:
        """Record that pod ``uid`` holds ``devices`` on ``node`` (none: a CPU slot)."""
        with self._lock:
            touched = self._release(uid)
            self._hold(uid, node, devices)
            for name in touched | {node}:
                self._recount_node(name)
            self.generation += 1

    def tentative(self, uid: str, node: str, gpus: int) -> None:
        """Count ``gpus`` devices (0: a CPU slot) of ``node`` as taken until bind or the TTL."""
        with self._lock:
            touched = self._release(uid)
            expires = self._clock() + RESERVATION_TTL_S
            self._tentative[uid] = (node, gpus, expires)
            self._add_tentative(node, gpus, 1)
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

    def _hold(self, uid: str, node: str, devices: tuple[int, ...]) -> None:
        self._holders.setdefault(node, {})[uid] = devices
        self._held_on[uid] = node

    def _release(self, uid: str) -> set[str]:
        """Drop ``uid``'s holds; returns the nodes whose counts changed (not recounted yet)."""
        touched = set()
        if uid in self._tentative:
            touched.add(self._drop_tentative(uid))
        node = self._held_on.pop(uid, None)
        if node is not None:
            holders = self._holders[node]
            del holders[uid]
            if not holders:
                del self._holders[node]
            touched.add(node)
        return touched

    def take(self, uid: str, node: str, count: int) -> tuple[int, ...] | None:
        """Atomically assign ``count`` free, healthy devices of ``node`` to ``uid``.

        None when too few are free. Zero devices take a CPU slot (never refused: the kubelet
        counts CPUs). A pod that already holds as many devices on this node keeps them (bind is
        idempotent).
        """
        with self._lock:
            mine = self._holders.get(node, {}).get(uid)
            if mine is not None and len(mine) == count:
                return mine
            known = self.node(node)
            if known is None:
                return None
            others = {d for u, ds in self._holders.get(node, {}).items() if u != uid for d in ds}
            free = [d for d in known.device_indices if d not in others]
            if len(free) < count:
                return None
            devices = tuple(free[:count])
            touched = self._release(uid)
            self._hold(uid, node, devices)
            for name in touched | {node}:
                self._recount_node(name)
            self.generation += 1
            return devices

    def holders(self, node: str) -> dict[str, tuple[int, ...]]:
        """Pods holding devices of ``node``."""
        with self._lock:
            return dict(self._holders.get(node, {}))
