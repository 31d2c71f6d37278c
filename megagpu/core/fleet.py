"""The fleet as arrays: one row per (node, backend) pair, built once, indexed per decision.

Policies score candidate rows with numpy, so a decision over 1,000 nodes costs microseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from megagpu.core import features, model, prior


@dataclass(frozen=True)
class Fleet:
    """Static attributes of every (node, backend) row.

    Immutable: a change of one node makes a new Fleet with ``replaced`` or ``removed``, which
    costs that node's rows in Python and one array copy (memcpy) per column, so requests in
    flight keep a consistent view. Rows of a changed node move to the end; the row and node
    order is no contract.
    """

    nodes: tuple[model.Node, ...]
    node_names: tuple[str, ...]
    """Names of all nodes, by node index (the same object while the node set is unchanged)."""
    row_node: np.ndarray
    """Node index of each row."""
    row_backend: np.ndarray
    """Backend name of each row (object array)."""
    row_backend_id: np.ndarray
    """Index into ``model.BACKENDS`` of each row."""
    action_keys: tuple[str, ...]
    """Distinct action keys (``backend/device_class``), the unit the policy learns about."""
    row_action_id: np.ndarray
    """Index into ``action_keys`` of each row."""
    row_fp16_tflops: np.ndarray
    row_fp32_tflops: np.ndarray
    row_mem_gbps: np.ndarray
    row_efficiency: np.ndarray
    """Backend efficiency of each row (``core.prior.efficiency``)."""
    row_slots: np.ndarray
    row_memory_mib: np.ndarray
    node_devices: np.ndarray
    node_memory_mib: np.ndarray
    node_healthy: np.ndarray
    node_backends: np.ndarray
    """Boolean matrix: node x ``model.BACKENDS``, True where the node offers the backend."""

    @classmethod
    def build(cls, nodes: Sequence[model.Node]) -> Fleet:
        """Lay out rows for ``nodes``, one per backend each node offers."""
        empty = cls._empty()
        rows = _Rows.of(list(enumerate(nodes)))
        return empty._with(tuple(nodes), np.zeros(0, bool), np.zeros(0, np.int64), rows)

    @classmethod
    def _empty(cls) -> Fleet:
        ints, floats = np.zeros(0, np.int64), np.zeros(0, float)
        return cls(
            nodes=(),
            node_names=(),
            row_node=ints,
            row_backend=np.zeros(0, dtype=object),
            row_backend_id=ints,
            action_keys=(),
            row_action_id=ints,
            row_fp16_tflops=floats,
            row_fp32_tflops=floats,
            row_mem_gbps=floats,
            row_efficiency=floats,
            row_slots=ints,
            row_memory_mib=ints,
            node_devices=ints,
            node_memory_mib=ints,
            node_healthy=np.zeros(0, bool),
            node_backends=np.zeros((0, len(model.BACKENDS)), dtype=bool),
        )

    def replaced(self, index: int, node: model.Node) -> Fleet:
        """A copy with node ``index`` replaced by ``node``; ``index == len(nodes)`` appends."""
        nodes = self.nodes[:index] + (node,) + self.nodes[index + 1 :]
        renumber = np.arange(len(self.nodes), dtype=np.int64)
        return self._with(nodes, self.row_node != index, renumber, _Rows.of([(index, node)]))

    def removed(self, index: int) -> Fleet:
        """A copy without node ``index``; the last node takes its index."""
        last = len(self.nodes) - 1
        nodes = self.nodes[:last]
        renumber = np.arange(len(self.nodes), dtype=np.int64)
        renumber[index] = -1
        if index != last:
            nodes = nodes[:index] + (self.nodes[last],) + nodes[index + 1 :]
            renumber[last] = index
        return self._with(nodes, self.row_node != index, renumber, _Rows.of([]))

    def _with(
        self,
        nodes: tuple[model.Node, ...],
        keep: np.ndarray,
        renumber: np.ndarray,
        added: _Rows,
    ) -> Fleet:
        """Keep the rows of ``keep`` (node indices mapped through ``renumber``), add ``added``."""
        same = len(nodes) == len(self.nodes) and all(
            self.node_names[i] == node.name for i, node in added.nodes
        )
        names = self.node_names if same else tuple(n.name for n in nodes)
        keys = list(self.action_keys)
        known = {k: i for i, k in enumerate(keys)}
        for akey in added.action:
            if akey not in known:
                known[akey] = len(keys)
                keys.append(akey)
        action_id = np.concatenate(
            [self.row_action_id[keep], np.asarray([known[a] for a in added.action], np.int64)]
        )
        used = np.bincount(action_id, minlength=len(keys)) > 0
        if not used.all():
            action_id = (np.cumsum(used) - 1)[action_id]
            keys = [k for k, u in zip(keys, used, strict=True) if u]
        backend_id = np.asarray([model.BACKENDS.index(b) for b in added.backend], np.int64)

        def rows(old: np.ndarray, new: Sequence[object], dtype: object) -> np.ndarray:
            return np.concatenate([old[keep], np.asarray(new, dtype=dtype)])

        return Fleet(
            nodes=nodes,
            node_names=names,
            row_node=rows(renumber[self.row_node], added.node, np.int64),
            row_backend=rows(self.row_backend, added.backend, object),
            row_backend_id=np.concatenate([self.row_backend_id[keep], backend_id]),
            action_keys=tuple(keys),
            row_action_id=action_id,
            row_fp16_tflops=rows(self.row_fp16_tflops, added.fp16, float),
            row_fp32_tflops=rows(self.row_fp32_tflops, added.fp32, float),
            row_mem_gbps=rows(self.row_mem_gbps, added.gbps, float),
            row_efficiency=rows(
                self.row_efficiency, [prior.efficiency(b) for b in added.backend], float
            ),
            row_slots=rows(self.row_slots, added.slots, np.int64),
            row_memory_mib=rows(self.row_memory_mib, added.memory, np.int64),
            node_devices=_column(
                self.node_devices, renumber, len(nodes), added, lambda n: n.devices
            ),
            node_memory_mib=_column(
                self.node_memory_mib, renumber, len(nodes), added, lambda n: n.memory_mib_per_device
            ),
            node_healthy=_column(
                self.node_healthy, renumber, len(nodes), added, lambda n: n.healthy
            ),
            node_backends=_column(self.node_backends, renumber, len(nodes), added, _offers),
        )

    def feasible_rows(self, workload: model.Workload, free_slots: np.ndarray) -> np.ndarray:
        """Rows where ``workload`` fits now: acceptable backend, enough free devices and memory."""
        need = max(workload.gpus, 1)
        ok = free_slots[self.row_node] >= need
        if workload.gpus == 0:
            acceptable = ["cpu"] if "cpu" in workload.backends else []
        else:
            acceptable = [b for b in workload.backends if b != "cpu"]
            ok &= self.row_memory_mib >= workload.memory_mib
        offered = np.zeros(len(model.BACKENDS), dtype=bool)
        offered[[model.BACKENDS.index(b) for b in acceptable]] = True
        return np.flatnonzero(ok & offered[self.row_backend_id])


class _Rows:
    """Row attributes of some nodes, as lists, for appending to a fleet."""

    def __init__(self) -> None:
        self.nodes: list[tuple[int, model.Node]] = []
        self.node: list[int] = []
        self.backend: list[str] = []
        self.action: list[str] = []
        self.fp16: list[float] = []
        self.fp32: list[float] = []
        self.gbps: list[float] = []
        self.slots: list[int] = []
        self.memory: list[int] = []

    @classmethod
    def of(cls, nodes: Sequence[tuple[int, model.Node]]) -> _Rows:
        """One row per backend of each (index, node)."""
        rows = cls()
        rows.nodes = list(nodes)
        for index, node in nodes:
            for backend in node.backends:
                rows.node.append(index)
                rows.backend.append(backend)
                rows.action.append(features.action_key(backend, node.device_class))
                rows.fp16.append(node.benchmarks.fp16_tflops)
                rows.fp32.append(node.benchmarks.fp32_tflops)
                rows.gbps.append(node.benchmarks.mem_gbps)
                rows.slots.append(node.slots)
                rows.memory.append(node.memory_mib_per_device)
        return rows


def _offers(node: model.Node) -> np.ndarray:
    offers = np.zeros(len(model.BACKENDS), dtype=bool)
    offers[[model.BACKENDS.index(b) for b in node.backends]] = True
    return offers


def _column(
    old: np.ndarray,
    renumber: np.ndarray,
    size: int,
    added: _Rows,
    value: Callable[[model.Node], object],
) -> np.ndarray:
    """A per-node column of ``size`` nodes.

    Old values move by ``renumber`` (-1 drops one), then the added nodes' values are set.
    """
    column = np.zeros((size, *old.shape[1:]), dtype=old.dtype)
    alive = renumber >= 0
    column[renumber[alive]] = old[alive]
    for index, node in added.nodes:
        column[index] = value(node)
    return column


class Running(NamedTuple):
    """A job that runs on a node: what waiting needs to predict when the node frees."""

    workload: model.Workload
    row: int
    """The fleet row it runs on."""
    started_s: float
    slots: int
    """Slots it holds (devices, or one CPU slot)."""
    prediction: model.Prediction | None = None
    """Its run time as predicted when it was placed (``decision.predictedSeconds``), if any."""


@dataclass(frozen=True)
class View:
    """What a policy sees for one decision: the fleet, candidate rows, and load."""

    fleet: Fleet
    rows: np.ndarray
    """Candidate row indices (all feasible)."""
    free_slots: np.ndarray
    """Free slots per node (all nodes)."""
    queue_length: int = 0
    utilization: np.ndarray | None = None
    """Busy share per node, 0..1 (defaults to 1 - free/slots)."""
    busy_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Rows the workload could run on once their node frees (acceptable, fits the node, too few
    free slots now): the candidates of waiting."""
    running: Mapping[int, Sequence[Running]] = field(default_factory=dict)
    """Node index -> what runs there now (needed for the nodes of ``busy_rows``)."""
    ahead: Mapping[int, Sequence[Running]] = field(default_factory=dict)
    """Node index -> pending workloads ahead in the queue that may take the node when it frees,
    in queue order (``started_s`` unused; ``prediction`` when their policy made one)."""
    now_s: float = 0.0
    """The clock the running jobs' start times are on."""
    wait_left_s: float = 0.0
    """How much longer the workload may be kept pending (0: it must be placed now)."""
    waited_s: float = 0.0
    """How long the workload has been kept pending already (from its first wait)."""

    def free_share(self) -> np.ndarray:
        """Free share of each candidate row's node, 0..1."""
        nodes = self.fleet.row_node[self.rows]
        return self.free_slots[nodes] / np.maximum(self.fleet.row_slots[self.rows], 1)

    def node_of(self, row: int) -> model.Node:
        """The node of fleet row ``row``."""
        return self.fleet.nodes[int(self.fleet.row_node[row])]
