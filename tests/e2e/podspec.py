"""Pods shaped as the operator renders them (DESIGN 4 and 9.2), for tests of the extender."""

from __future__ import annotations

from typing import Any

GPU_BACKENDS = ("cuda", "vulkan", "metal")


def megagpu_pod(
    name: str,
    *,
    workload_type: str,
    model: str,
    gpus: int,
    backends: tuple[str, ...],
    memory_mib: int = 0,
    scheduler: str = "megagpu-scheduler",
) -> dict[str, Any]:
    """A pod with the megagpu label, annotations, node affinity and resources."""
    resources: dict[str, Any] = {}
    if gpus >= 1 and all(b in GPU_BACKENDS for b in backends):
        resources = {"limits": {"megagpu.io/gpu": str(gpus)}}
    terms = [
        {
            "matchExpressions": [
                {"key": f"megagpu.io/backend.{b}", "operator": "In", "values": ["true"]}
            ]
        }
        for b in backends
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"megagpu.io/workload": name},
            "annotations": {
                "megagpu.io/workload-type": workload_type,
                "megagpu.io/model": model,
                "megagpu.io/backends": ",".join(backends),
                "megagpu.io/gpus": str(gpus),
                "megagpu.io/memory-mib": str(memory_mib),
                "megagpu.io/precision": "fp16",
                "megagpu.io/priority": "normal",
                "megagpu.io/sim-work": "1e12",  # the simulated runtime never completes them
            },
        },
        "spec": {
            "schedulerName": scheduler,
            "restartPolicy": "Never",
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
                }
            },
            "containers": [{"name": "work", "image": "busybox", "resources": resources}],
        },
    }


MIX = (
    ("inference", "llama3-8b-q4", 1, ("cuda", "metal", "vulkan")),
    ("training", "resnet-50-bs64", 2, ("cuda", "vulkan")),
    ("embedding", "all-minilm-l6-v2", 0, ("cpu",)),
    ("fineTuning", "bert-large", 2, ("cuda",)),
    ("batchInference", "llama3-70b-q4", 1, ("cuda", "metal", "vulkan")),
)
"""One entry per workload type: (type, model, gpus, backends)."""
