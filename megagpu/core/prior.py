"""Cold-start prior from measured benchmarks: the expected relative speed of a device.

The one rule (DESIGN section 5): a device's speed for a workload is its fp16 TFLOPS and memory
bandwidth relative to a reference device, weighted by the workload's compute intensity, times the
backend's efficiency. The reference is V100 for training-like work and H100 for inference-like
work; Vulkan runs at 0.55x of the native backend (0.4-0.7 is the sensitivity range).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

BACKEND_EFFICIENCY = {"cuda": 1.0, "metal": 1.0, "vulkan": 0.55, "cpu": 1.0}
"""Share of the device's benchmark speed a backend delivers."""


class Reference(NamedTuple):
    """Benchmarks of a reference device."""

    fp16_tflops: float
    fp32_tflops: float
    mem_gbps: float


V100 = Reference(fp16_tflops=125.0, fp32_tflops=15.7, mem_gbps=900.0)
H100 = Reference(fp16_tflops=989.0, fp32_tflops=67.0, mem_gbps=3350.0)
INFERENCE_TYPES = ("inference", "embedding", "batchInference")


def reference_for(workload_type: str) -> Reference:
    """V100 for training-like work, H100 for inference-like work."""
    return H100 if workload_type in INFERENCE_TYPES else V100


def efficiency(backend: str, vulkan_efficiency: float = BACKEND_EFFICIENCY["vulkan"]) -> float:
    """Share of the device's benchmark speed that ``backend`` delivers."""
    return vulkan_efficiency if backend == "vulkan" else BACKEND_EFFICIENCY[backend]


def relative_speed(
    workload_type: str,
    compute_intensity: float,
    backend_efficiency: np.ndarray | float,
    fp16_tflops: np.ndarray | float,
    fp32_tflops: np.ndarray | float,
    mem_gbps: np.ndarray | float,
    precision: str = "fp16",
) -> np.ndarray:
    """Speed relative to the reference device (1.0 = as fast), elementwise; at least 1e-6.

    fp16 and bf16 work uses the fp16 figure, fp32 and fp64 work the fp32 figure.
    """
    ref = reference_for(workload_type)
    ci = min(max(compute_intensity, 0.0), 1.0)
    if precision in ("fp16", "bf16"):
        compute = np.asarray(fp16_tflops) / ref.fp16_tflops
    else:
        compute = np.asarray(fp32_tflops) / ref.fp32_tflops
    speed = ci * compute + (1.0 - ci) * np.asarray(mem_gbps) / ref.mem_gbps
    return np.maximum(speed * backend_efficiency, 1e-6)
