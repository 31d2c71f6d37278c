"""The cpu backend: cores, memory and a numpy GEMM figure."""

from __future__ import annotations

import os
import time

import numpy as np

from megagpu.probe import readings


class Cpu:
    """The node's CPUs as one device."""

    name = "cpu"

    def read(self) -> readings.Backend:
        """Cores and memory (always available)."""
        start = time.perf_counter()
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        device = readings.Device(
            index=0,
            name=f"{os.cpu_count()} CPU cores",
            kind="cpu",
            memory_bytes=memory,
            fp64=True,
            fp16=False,
        )
        return readings.Backend(
            self.name, True, devices=[device], read_seconds=time.perf_counter() - start
        )


def benchmark(n: int = 1024) -> readings.Benchmarks:
    """fp32 GEMM TFLOPS with numpy (a few tenths of a second), on random data as the GPU's."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    start = time.perf_counter()
    runs = 0
    while runs < 3 or time.perf_counter() - start < 0.2:
        a @ a
        runs += 1
    seconds = time.perf_counter() - start
    return readings.Benchmarks(
        fp32_tflops=2 * n**3 * runs / seconds / 1e12,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        seconds=seconds,
    )
