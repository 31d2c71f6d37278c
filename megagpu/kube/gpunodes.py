"""Publish probe readings as GpuNode status (DESIGN 3): one GpuNode per Node, same name."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from megagpu.kube import names


def _mib(value: int | None) -> int | None:
    return None if value is None else int(value // 2**20)


def status(reading: Any) -> dict[str, Any]:
    """The GpuNode status of a probe reading (``megagpu.probe.node.NodeReading``)."""
    backends: dict[str, Any] = {}
    for b in reading.backends:
        entry: dict[str, Any] = {
            "available": b.available,
            "healthy": b.healthy,
            "reason": b.reason,
            "driverVersion": b.driver_version,
            "apiVersion": b.api_version,
            "devices": [
                {
                    "index": d.index,
                    "uuid": d.uuid,
                    "pciBusId": d.pci_bus_id,
                    "name": d.name,
                    "memoryMiB": _mib(d.memory_bytes),
                    "usedMiB": _mib(d.used_bytes),
                    "utilization": d.utilization,
                    "temperatureC": d.temperature_c,
                    "powerW": d.power_w,
                    "computeCapability": d.compute_capability,
                    "fp64": d.fp64,
                    "fp16": d.fp16,
                    "healthy": d.healthy,
                }
                for d in b.devices
            ],
        }
        if b.benchmarks is not None:
            entry["benchmarks"] = {
                "fp32Tflops": b.benchmarks.fp32_tflops,
                "fp16Tflops": b.benchmarks.fp16_tflops,
                "memGBps": b.benchmarks.mem_gbps,
                "measuredAt": b.benchmarks.measured_at or None,
            }
        backends[b.name] = _prune(entry)
    gpus = reading.gpus()
    return {
        "summary": {
            "backends": ",".join(b.name for b in reading.backends if b.available),
            "devices": len(gpus),
            "healthy": sum(d.healthy for d in gpus),
        },
        "backends": backends,
        "lastProbeTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _prune(value: Any) -> Any:
    """Drop None values (unsupported fields) and empty strings: absent, never 0."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None and v != ""}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def publish(custom: client.CustomObjectsApi, reading: Any) -> None:
    """Create the GpuNode if needed and write its status."""
    args = (names.GROUP, names.VERSION, names.GPUNODES)
    body = {
        "apiVersion": names.API_VERSION,
        "kind": "GpuNode",
        "metadata": {"name": reading.hostname, "labels": {"app.kubernetes.io/part-of": "megagpu"}},
    }
    try:
        custom.create_cluster_custom_object(*args, body)
    except ApiException as e:
        if e.status != 409:
            raise
    custom.patch_cluster_custom_object_status(*args, reading.hostname, {"status": status(reading)})
