"""The simulated backend: plausible readings for every fake node of a cluster spec."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from megagpu.core import model
from megagpu.probe import node as node_mod
from megagpu.probe import readings


def _wave(seed: int, now: float, period_s: float = 300.0) -> float:
    """A smooth value in 0..1 that moves over minutes, different per seed."""
    return 0.5 + 0.45 * math.sin(2 * math.pi * (now / period_s) + seed * 1.7)


def reading(spec_node: model.Node, now: float) -> node_mod.NodeReading:
    """One plausible reading of a fake node: its backends, devices and benchmarks."""
    out = node_mod.NodeReading(spec_node.name)
    bench = readings.Benchmarks(
        spec_node.benchmarks.fp32_tflops,
        spec_node.benchmarks.fp16_tflops,
        spec_node.benchmarks.mem_gbps,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
    )
    for backend in spec_node.backends:
        devices = []
        count = spec_node.devices if backend != "cpu" else 1
        for i in range(count):
            load = _wave(hash((spec_node.name, i)) % 97, now)
            memory = spec_node.memory_mib_per_device * 2**20
            devices.append(
                readings.Device(
                    index=i,
                    name=f"{spec_node.device_class} (simulated)",
                    uuid=f"SIM-{spec_node.name}-{i}",
                    pci_bus_id=f"00000000:{i + 1:02x}:00.0",
                    memory_bytes=memory or None,
                    used_bytes=int(memory * load * 0.8) if memory else None,
                    utilization=load,
                    temperature_c=round(35 + 45 * load, 1),
                    power_w=round(60 + 300 * load, 1),
                    kind="cpu" if backend == "cpu" else "gpu",
                )
            )
        out.backends.append(
            readings.Backend(
                backend, True, driver_version="simulated", devices=devices, benchmarks=bench
            )
        )
    return out


def readers(
    nodes: list[model.Node], clock: Callable[[], float] = time.time
) -> list[Callable[[], node_mod.NodeReading]]:
    """One reader per fake node."""
    return [lambda n=n: reading(n, clock()) for n in nodes]
