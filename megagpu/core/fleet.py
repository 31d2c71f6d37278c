"""The fleet as arrays: one row per (node, backend) pair, built once, indexed per decision.

Policies score candidate rows with numpy, so a decision over 1,000 nodes costs microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from megagpu.core import features, model, prior


@dataclass(frozen=True)
class Fleet:
    """Static attributes of every (node, backend) row."""

    nodes: tuple[model.Node, ...]
    row_node: np.ndarray
    """Node index of each row."""
    row_backend: tuple[str, ...]
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
        row_node, row_backend, row_action = [], [], []
        fp16, fp32, gbps, slots, mem = [], [], [], [], []
        for index, node in enumerate(nodes):
            for backend in node.backends:
                row_node.append(index)
                row_backend.append(backend)
                row_action.append(features.action_key(backend, node.device_class))
                fp16.append(node.benchmarks.fp16_tflops)
                fp32.append(node.benchmarks.fp32_tflops)
                gbps.append(node.benchmarks.mem_gbps)
                slots.append(node.slots)
                mem.append(node.memory_mib_per_device)
        actions = list(dict.fromkeys(row_action))
        offers = np.zeros((len(nodes), len(model.BACKENDS)), dtype=bool)
        for index, node in enumerate(nodes):
            offers[index, [model.BACKENDS.index(b) for b in node.backends]] = True
        return cls(
            nodes=tuple(nodes),
            row_node=np.asarray(row_node, dtype=np.int64),
            row_backend=tuple(row_backend),
            row_backend_id=np.asarray([model.BACKENDS.index(b) for b in row_backend], np.int64),
            action_keys=tuple(actions),
            row_action_id=np.asarray([actions.index(a) for a in row_action], dtype=np.int64),
            row_fp16_tflops=np.asarray(fp16, dtype=float),
            row_fp32_tflops=np.asarray(fp32, dtype=float),
            row_mem_gbps=np.asarray(gbps, dtype=float),
            row_efficiency=np.asarray([prior.efficiency(b) for b in row_backend], dtype=float),
            row_slots=np.asarray(slots, dtype=np.int64),
            row_memory_mib=np.asarray(mem, dtype=np.int64),
            node_devices=np.asarray([n.devices for n in nodes], dtype=np.int64),
            node_memory_mib=np.asarray([n.memory_mib_per_device for n in nodes], dtype=np.int64),
            node_healthy=np.asarray([n.healthy for n in nodes], dtype=bool),
            node_backends=offers,
        )

    @property
    def node_names(self) -> tuple[str, ...]:
        """Names of all nodes, by node index."""
        return tuple(n.name for n in self.nodes)

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

    def free_share(self) -> np.ndarray:
        """Free share of each candidate row's node, 0..1."""
        nodes = self.fleet.row_node[self.rows]
        return self.free_slots[nodes] / np.maximum(self.fleet.row_slots[self.rows], 1)

    def node_of(self, row: int) -> model.Node:
        """The node of fleet row ``row``."""
        return self.fleet.nodes[int(self.fleet.row_node[row])]
