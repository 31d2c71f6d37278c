"""Domain values: devices, nodes, workloads, decisions and outcomes (frozen dataclasses)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WORKLOAD_TYPES = ("inference", "training", "fineTuning", "embedding", "batchInference")
BACKENDS = ("cuda", "vulkan", "metal", "cpu")
GPU_BACKENDS = ("cuda", "vulkan", "metal")
PRECISIONS = ("fp32", "fp16", "bf16", "fp64")
PRIORITIES = ("low", "normal", "high", "critical")
MODES = ("exploit", "explore", "forced", "overridden", "fallback")
CPU_SLOTS_PER_NODE = 8
"""Concurrent zero-GPU jobs a node runs on its CPUs (a CPU-only node has no devices to count)."""


class ValidationError(ValueError):
    """A domain value is out of range; the message names the field."""


def check_finite(name: str, value: float, *, minimum: float | None = 0.0) -> float:
    """Return ``value`` as float if finite and at least ``minimum``, else raise ValidationError."""
    number = float(value)
    if not math.isfinite(number):
        raise ValidationError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, got {value!r}")
    return number


@dataclass(frozen=True)
class Benchmarks:
    """Measured speed of one device (per device, not per node)."""

    fp32_tflops: float = 0.0
    """Dense fp32 GEMM throughput, TFLOP/s."""
    fp16_tflops: float = 0.0
    """Dense fp16 GEMM throughput, TFLOP/s."""
    mem_gbps: float = 0.0
    """Device memory copy bandwidth, GB/s."""

    def __post_init__(self) -> None:
        for name in ("fp32_tflops", "fp16_tflops", "mem_gbps"):
            check_finite(f"benchmarks.{name}", getattr(self, name))


@dataclass(frozen=True)
class Node:
    """A schedulable node with identical devices."""

    name: str
    device_class: str
    """Device product class, for example ``h100`` or ``cpu``."""
    backends: tuple[str, ...]
    devices: int
    memory_mib_per_device: int
    benchmarks: Benchmarks = field(default_factory=Benchmarks)
    healthy: bool = True

    def __post_init__(self) -> None:
        if not self.backends:
            raise ValidationError(f"node {self.name}: backends must not be empty")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ValidationError(f"node {self.name}: unknown backend(s) {unknown}; use {BACKENDS}")
        if self.devices < 0 or self.memory_mib_per_device < 0:
            raise ValidationError(f"node {self.name}: devices and memory must be >= 0")

    @property
    def slots(self) -> int:
        """Units of capacity: devices, or CPU slots on a node without devices."""
        return self.devices if self.devices > 0 else CPU_SLOTS_PER_NODE


@dataclass(frozen=True)
class Workload:
    """One job to place: what the GpuWorkload spec says, plus the simulator's work units."""

    uid: str
    workload_type: str
    model: str
    gpus: int
    memory_mib: int = 0
    precision: str = "fp16"
    backends: tuple[str, ...] = BACKENDS
    priority: str = "normal"
    compute_intensity: float = 0.7
    deadline_s: float | None = None
    work: float = 1.0
    """Work units (for example training steps); duration on a device = work / throughput."""

    def __post_init__(self) -> None:
        if self.workload_type not in WORKLOAD_TYPES:
            raise ValidationError(
                f"workload {self.uid}: workload_type {self.workload_type!r} is not one of "
                f"{WORKLOAD_TYPES}"
            )
        if not 0 <= self.gpus <= 8:
            raise ValidationError(f"workload {self.uid}: gpus must be 0..8, got {self.gpus}")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown or not self.backends:
            raise ValidationError(
                f"workload {self.uid}: backends must be a non-empty list of {BACKENDS}, "
                f"got {list(self.backends)}"
            )
        if self.priority not in PRIORITIES:
            raise ValidationError(f"workload {self.uid}: priority must be one of {PRIORITIES}")
        check_finite(f"workload {self.uid}: work", self.work)
        check_finite(f"workload {self.uid}: memory_mib", self.memory_mib)
        if self.deadline_s is not None:
            check_finite(f"workload {self.uid}: deadline_s", self.deadline_s)

    @property
    def priority_rank(self) -> int:
        """Higher runs first: low 0 .. critical 3."""
        return PRIORITIES.index(self.priority)


@dataclass(frozen=True)
class Alternative:
    """A node that was considered, with its score."""

    node: str
    score: int
    q_value: float


@dataclass(frozen=True)
class Decision:
    """Where a workload was placed and why (the ``status.decision`` of a GpuWorkload)."""

    node: str
    backend: str
    mode: str
    score: int
    q_values: dict[str, float]
    alternatives: tuple[Alternative, ...]
    policy_version: int
    reason: str
    predicted_seconds: float | None = None


@dataclass(frozen=True)
class Outcome:
    """How a placement ended: the input of one learning update."""

    uid: str
    workload: Workload
    node: str
    backend: str
    device_class: str
    duration_s: float
    succeeded: bool = True
    deadline_missed: bool = False
    context: int = 0
    """Node context bucket at decision time (see ``core.features.context_bucket``)."""

    @property
    def throughput(self) -> float:
        """Work units per second this placement achieved (0 for a failure)."""
        if not self.succeeded or self.duration_s <= 0:
            return 0.0
        return self.workload.work / self.duration_s
