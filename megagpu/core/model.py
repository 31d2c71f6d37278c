"""Domain values: devices, nodes, workloads, decisions and outcomes (frozen dataclasses)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

WORKLOAD_TYPES = ("inference", "training", "fineTuning", "embedding", "batchInference")
BACKENDS = ("cuda", "vulkan", "metal", "cpu")
GPU_BACKENDS = ("cuda", "vulkan", "metal")
PRECISIONS = ("fp32", "fp16", "bf16", "fp64")
PRIORITIES = ("low", "normal", "high", "critical")
MODES = ("exploit", "explore", "forced", "overridden", "fallback")
WORK_SOURCES = ("reported", "declared", "none")
"""Where an outcome's size came from (DESIGN 9.10): the container, the spec, or nowhere."""
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
class Work:
    """An amount of work in the workload's own unit (``spec.work``, DESIGN 9.10)."""

    amount: float
    """Greater than 0 and finite."""
    unit: str = ""
    """For example ``tokens``, ``samples`` or ``steps``; empty when not said."""

    def __post_init__(self) -> None:
        amount = check_finite("work.amount", self.amount)
        if amount <= 0:
            raise ValidationError(f"work.amount must be > 0, got {self.amount!r}")


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
    device_ids: tuple[tuple[int, str], ...] = ()
    """(index, id) of each device that may be assigned (healthy), when the node names them;
    empty means indices ``0..devices-1`` with no ids (cluster specs, the simulator)."""

    def __post_init__(self) -> None:
        if self.device_ids and len(self.device_ids) != self.devices:
            raise ValidationError(
                f"node {self.name}: {len(self.device_ids)} device ids for {self.devices} devices"
            )
        if not self.backends:
            raise ValidationError(f"node {self.name}: backends must not be empty")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ValidationError(f"node {self.name}: unknown backend(s) {unknown}; use {BACKENDS}")
        if self.devices < 0 or self.memory_mib_per_device < 0:
            raise ValidationError(f"node {self.name}: devices and memory must be >= 0")

    @property
    def device_indices(self) -> tuple[int, ...]:
        """Indices of the devices that may be assigned, in order."""
        if self.device_ids:
            return tuple(index for index, _ in self.device_ids)
        return tuple(range(self.devices))

    def device_id(self, index: int) -> str:
        """The id of device ``index`` ("" when the node names none)."""
        return next((i for n, i in self.device_ids if n == index), "")

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
    """True work units (for example training steps): the simulator's duration on a device is
    work / throughput. What the learner is told is ``Outcome.work``, never this."""
    declared: Work | None = None
    """``spec.work``: the size the user declared, if any."""

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


class Prediction(NamedTuple):
    """A predicted run time on one candidate, with its uncertainty."""

    seconds: float
    """Median predicted run time."""
    sigma: float
    """Standard deviation of log(actual / predicted): 0.1 is about +-10%."""
    size_source: str
    """Where the size came from: ``declared``, ``history`` or ``true`` (a simulator oracle)."""


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
    work: float | None = None
    """The size the learner is told (reported or declared); None when unknown."""
    work_source: str = "none"
    """``reported``, ``declared`` or ``none`` (exactly when ``work`` is None)."""

    def __post_init__(self) -> None:
        if self.work_source not in WORK_SOURCES:
            raise ValidationError(f"work_source must be one of {WORK_SOURCES}")
        if (self.work is None) != (self.work_source == "none"):
            raise ValidationError("an outcome has a work size exactly when its source is not none")
        if self.work is not None and check_finite("outcome work", self.work) <= 0:
            raise ValidationError(f"outcome work must be > 0, got {self.work!r}")

    @property
    def sized(self) -> bool:
        """Whether the learner may read this outcome as a speed (a success of known size)."""
        return self.succeeded and self.work is not None and self.duration_s > 0

    @property
    def throughput(self) -> float:
        """Work units per second this placement achieved (0 for a failure or unknown size)."""
        if not self.sized or self.work is None:
            return 0.0
        return self.work / self.duration_s
