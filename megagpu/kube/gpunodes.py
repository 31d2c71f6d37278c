"""Publish probe readings as GpuNode status (DESIGN 3): one GpuNode per Node, same name."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from megagpu.core import model
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
        "devices": reading.device_list(),
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


def node_labels(reading: Any) -> dict[str, str | None]:
    """The labels of DESIGN 9.3 for a reading; None removes a label that no longer holds."""
    available = {b.name for b in reading.backends if b.available}
    labels: dict[str, str | None] = {
        names.LABEL_BACKEND.format(backend=b): "true" if b in available else None
        for b in model.BACKENDS
    }
    gpus = reading.gpus()
    memory = [d.memory_bytes for d in gpus if d.memory_bytes]
    labels[names.LABEL_GPU_PRODUCT] = names.label_value(gpus[0].name) if gpus else None
    labels[names.LABEL_GPU_COUNT] = str(len(gpus)) if gpus else None
    labels[names.LABEL_GPU_MEMORY] = str(min(memory) // 2**20) if memory else None
    return labels


def publish_node(
    core: client.CoreV1Api, node_name: str, reading: Any, resource_mode: str = "megagpu"
) -> None:
    """Label the Node and, in resource mode ``megagpu``, advertise its healthy GPUs.

    In mode ``vendor`` the vendor's device plugin advertises them (``nvidia.com/gpu``).
    """
    core.patch_node(node_name, {"metadata": {"labels": node_labels(reading)}})
    if resource_mode == "megagpu":
        healthy = str(sum(d.healthy for d in reading.gpus()))
        resources = {names.RESOURCE_GPU: healthy}
        core.patch_node_status(
            node_name, {"status": {"capacity": resources, "allocatable": resources}}
        )
