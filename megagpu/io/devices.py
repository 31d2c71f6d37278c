"""Benchmarks of the device classes the presets use, and the derived-row rule of DESIGN 5.

Figures are per device: vendor datasheet dense fp16 tensor TFLOPS, fp32 TFLOPS and memory
bandwidth, except ``h100``, measured by this project on an H100 80GB HBM3 with the probe's
cupy benchmarks (8192^3 GEMM, 1 GiB copy; benchmarks/results/probe-h100.json, 2026-11-26),
and ``cpu``, a 2-core numpy figure. ``g2``/``g3`` are anonymized in the Alibaba openb trace;
they are assumed to be T4-class and A10-class (an assumption, not a measurement).
"""

from __future__ import annotations

from typing import NamedTuple

from megagpu.core import prior


class DeviceSpec(NamedTuple):
    """What a cluster spec needs to know about a device class."""

    fp32_tflops: float
    fp16_tflops: float
    mem_gbps: float
    memory_mib: int
    backends: tuple[str, ...]


DEVICES: dict[str, DeviceSpec] = {
    "k80": DeviceSpec(4.4, 4.4, 240, 12288, ("cuda",)),
    "p100": DeviceSpec(9.3, 18.7, 732, 16384, ("cuda",)),
    "v100": DeviceSpec(15.7, 125.0, 900, 32768, ("cuda",)),
    "t4": DeviceSpec(8.1, 65.0, 320, 16384, ("cuda",)),
    "a10": DeviceSpec(31.2, 125.0, 600, 24576, ("cuda",)),
    "a100": DeviceSpec(19.5, 312.0, 2039, 81920, ("cuda",)),
    "h100": DeviceSpec(52.0, 899.0, 3009, 81920, ("cuda", "vulkan")),
    "l40s": DeviceSpec(91.6, 362.0, 864, 49152, ("cuda",)),
    "rtx4090": DeviceSpec(82.6, 165.0, 1008, 24576, ("cuda",)),
    "mi210": DeviceSpec(22.6, 181.0, 1638, 65536, ("vulkan",)),
    "m2-ultra": DeviceSpec(27.2, 27.2, 800, 131072, ("metal",)),
    "g2": DeviceSpec(8.1, 65.0, 320, 16384, ("cuda",)),
    "g3": DeviceSpec(31.2, 125.0, 600, 24576, ("cuda",)),
    "cpu": DeviceSpec(1.0, 0.5, 40, 0, ("cpu",)),
}
TRAINING_INTENSITY = 0.7
"""Compute intensity assumed for derived training rows."""
INFERENCE_INTENSITY = 0.2
"""Compute intensity assumed for derived LLM generation rows (memory-bound)."""


def speed(device: str, backend: str, workload_type: str, intensity: float) -> float:
    """Relative speed of a device class by the prior's rule (fp16 figures, DESIGN 5)."""
    spec = DEVICES[device]
    return float(
        prior.relative_speed(
            workload_type,
            intensity,
            prior.efficiency(backend),
            spec.fp16_tflops,
            spec.fp32_tflops,
            spec.mem_gbps,
        )
    )


def derive(
    throughput: float,
    source_device: str,
    device: str,
    backend: str,
    workload_type: str,
    intensity: float,
) -> float:
    """Throughput on ``device``/``backend`` derived from a native-backend measurement."""
    ratio = speed(device, backend, workload_type, intensity) / speed(
        source_device, DEVICES[source_device].backends[0], workload_type, intensity
    )
    return throughput * ratio


def group(prefix: str, count: int, device: str, devices_per_node: int) -> dict[str, object]:
    """A cluster-spec node group for a known device class."""
    spec = DEVICES[device]
    return {
        "name_prefix": prefix,
        "count": count,
        "device": device,
        "devices_per_node": 0 if device == "cpu" else devices_per_node,
        "memory_mib_per_device": spec.memory_mib,
        "backends": list(spec.backends),
        "benchmarks": {
            "fp32_tflops": spec.fp32_tflops,
            "fp16_tflops": spec.fp16_tflops,
            "mem_gbps": spec.mem_gbps,
        },
    }
