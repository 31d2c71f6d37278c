"""What a probe reads: per backend, its availability and devices (None = not supported, NA)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Device:
    """One device as a backend sees it; None marks a value the device does not report."""

    index: int
    name: str
    uuid: str = ""
    pci_bus_id: str = ""
    memory_bytes: int | None = None
    used_bytes: int | None = None
    utilization: float | None = None
    """Busy share, 0..1."""
    memory_copy_utilization: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    energy_mj: float | None = None
    """Total energy since boot, millijoules."""
    xid: int | None = None
    """Value of the last XID error (0 when none)."""
    ecc_uncorrected: int | None = None
    compute_capability: str = ""
    fp64: bool | None = None
    fp16: bool | None = None
    minor: int | None = None
    """Device node minor number (NVIDIA: ``/dev/nvidia<minor>``)."""
    kind: str = "gpu"
    """gpu, integrated, cpu (Vulkan CPU devices such as lavapipe are not GPUs)."""
    healthy: bool = True
    reason: str = ""


@dataclass
class Benchmarks:
    """Short benchmark results of one device."""

    fp32_tflops: float | None = None
    fp16_tflops: float | None = None
    mem_gbps: float | None = None
    measured_at: str = ""
    seconds: float = 0.0


@dataclass
class Backend:
    """One backend's view of the node."""

    name: str
    available: bool
    reason: str = ""
    driver_version: str = ""
    api_version: str = ""
    devices: list[Device] = field(default_factory=list)
    benchmarks: Benchmarks | None = None
    read_seconds: float = 0.0

    @property
    def healthy(self) -> bool:
        """Available and every device healthy."""
        return self.available and all(d.healthy for d in self.devices)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (None values kept as null)."""
        out = asdict(self)
        out["healthy"] = self.healthy
        return out
