"""Prometheus metrics read at scrape time: DCGM-compatible families and megagpu_* metrics.

DCGM names, units and labels are copied from dcgm-exporter (gpu, UUID, device, modelName,
pci_bus_id, Hostname); its counters are emitted untyped so no ``_total`` is appended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric, UnknownMetricFamily
from prometheus_client.registry import Collector

from megagpu.probe import node as node_mod
from megagpu.probe import readings

DCGM_LABELS = ["gpu", "UUID", "device", "modelName", "pci_bus_id", "Hostname"]
DCGM = (
    # name, help, value of a device (None: not supported, skipped), untyped counter?
    (
        "DCGM_FI_DEV_GPU_UTIL",
        "GPU utilization (in %).",
        lambda d: None if d.utilization is None else 100 * d.utilization,
        False,
    ),
    (
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "Memory utilization (in %).",
        lambda d: None if d.memory_copy_utilization is None else 100 * d.memory_copy_utilization,
        False,
    ),
    (
        "DCGM_FI_DEV_FB_USED",
        "Framebuffer memory used (in MiB).",
        lambda d: None if d.used_bytes is None else d.used_bytes / 2**20,
        False,
    ),
    (
        "DCGM_FI_DEV_FB_FREE",
        "Framebuffer memory free (in MiB).",
        lambda d: (
            None
            if d.used_bytes is None or d.memory_bytes is None
            else (d.memory_bytes - d.used_bytes) / 2**20
        ),
        False,
    ),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda d: d.temperature_c, False),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda d: d.power_w, False),
    ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", lambda d: d.sm_clock_mhz, False),
    ("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", lambda d: d.mem_clock_mhz, False),
    ("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", lambda d: d.xid, False),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "Total energy consumption since boot (in mJ).",
        lambda d: d.energy_mj,
        True,
    ),
)


class ProbeCollector(Collector):
    """Reads the node when scraped (never at import or registration)."""

    def __init__(self, read: Callable[[], node_mod.NodeReading], dcgm: bool = True) -> None:
        self._read = read
        self._dcgm = dcgm

    def describe(self) -> list[Metric]:
        """No samples at registration: describing must not touch NVML."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One reading, as metric families."""
        reading = self._read()
        cuda = reading.backend("cuda")
        if self._dcgm and cuda is not None and cuda.available:
            yield from self._dcgm_families(cuda, reading.hostname)
        yield from self._megagpu_families(reading)

    @staticmethod
    def _dcgm_families(cuda: readings.Backend, host: str) -> Iterator[Metric]:
        for name, help_text, value_of, counter in DCGM:
            family = (UnknownMetricFamily if counter else GaugeMetricFamily)(
                name, help_text, labels=DCGM_LABELS
            )
            for d in cuda.devices:
                value = value_of(d)
                if value is not None:
                    family.add_metric(
                        [str(d.index), d.uuid, f"nvidia{d.index}", d.name, d.pci_bus_id, host],
                        float(value),
                    )
            yield family

    @staticmethod
    def _megagpu_families(reading: node_mod.NodeReading) -> Iterator[Metric]:
        available = GaugeMetricFamily(
            "megagpu_backend_available",
            "1 when the backend's library and driver work.",
            labels=["backend"],
        )
        healthy = GaugeMetricFamily(
            "megagpu_backend_healthy",
            "1 when every device of the backend is healthy.",
            labels=["backend"],
        )
        duration = GaugeMetricFamily(
            "megagpu_probe_duration_seconds",
            "Time the last read of the backend took.",
            labels=["backend"],
        )
        memory = GaugeMetricFamily(
            "megagpu_device_memory_bytes", "Device memory.", labels=["backend", "device", "name"]
        )
        used = GaugeMetricFamily(
            "megagpu_device_memory_used_bytes",
            "Device memory in use.",
            labels=["backend", "device", "name"],
        )
        util = GaugeMetricFamily(
            "megagpu_device_utilization_ratio",
            "Busy share, 0 to 1.",
            labels=["backend", "device", "name"],
        )
        temperature = GaugeMetricFamily(
            "megagpu_device_temperature_celsius",
            "Device temperature.",
            labels=["backend", "device", "name"],
        )
        bench = GaugeMetricFamily(
            "megagpu_benchmark_flops", "Measured GEMM throughput.", labels=["backend", "precision"]
        )
        copy = GaugeMetricFamily(
            "megagpu_benchmark_copy_bytes_per_second",
            "Measured device copy bandwidth.",
            labels=["backend"],
        )
        gpus = GaugeMetricFamily("megagpu_node_gpus", "GPUs on the node, counted once.")
        gpus.add_metric([], len(reading.gpus()))
        for b in reading.backends:
            available.add_metric([b.name], float(b.available))
            healthy.add_metric([b.name], float(b.healthy))
            duration.add_metric([b.name], b.read_seconds)
            for d in b.devices:
                labels = [b.name, str(d.index), d.name]
                if d.memory_bytes is not None:
                    memory.add_metric(labels, float(d.memory_bytes))
                if d.used_bytes is not None:
                    used.add_metric(labels, float(d.used_bytes))
                if d.utilization is not None:
                    util.add_metric(labels, d.utilization)
                if d.temperature_c is not None:
                    temperature.add_metric(labels, d.temperature_c)
            if b.benchmarks is not None:
                for precision in ("fp32", "fp16"):
                    tflops = getattr(b.benchmarks, f"{precision}_tflops")
                    if tflops is not None:
                        bench.add_metric([b.name, precision], tflops * 1e12)
                if b.benchmarks.mem_gbps is not None:
                    copy.add_metric([b.name], b.benchmarks.mem_gbps * 1e9)
        yield from (available, healthy, duration, memory, used, util, temperature, bench, copy)
        yield gpus
