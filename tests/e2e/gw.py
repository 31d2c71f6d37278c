"""GpuWorkload manifests and waits for e2e tests."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.e2e.test_scheduler_extender import wait_for

GROUP, VERSION, PLURAL = "megagpu.io", "v1alpha1", "gpuworkloads"
MIX = (
    ("inference", "llama3-8b-q4", 1, ["cuda", "metal", "vulkan"]),
    ("training", "resnet-50-bs64", 2, ["cuda", "vulkan"]),
    ("embedding", "all-minilm-l6-v2", 0, ["cpu"]),
    ("fineTuning", "bert-large", 2, ["cuda"]),
    ("batchInference", "llama3-70b-q4", 1, ["cuda", "metal", "vulkan"]),
)
"""(type, model, gpus, backends); the work of each comes from WORK."""
WORK = {
    "llama3-8b-q4": "20000",
    "resnet-50-bs64": "20000",
    "all-minilm-l6-v2": "5",
    "bert-large": "3000",
    "llama3-70b-q4": "5000",
}
"""Simulated work: minutes to a few hours on the dev cluster's devices (seconds real)."""


def manifest(
    name: str,
    workload_type: str,
    model: str,
    gpus: int,
    backends: list[str],
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GpuWorkload",
        "metadata": {"name": name},
        "spec": {
            "workloadType": workload_type,
            "model": model,
            "gpus": gpus,
            "backends": backends,
            **spec,
            "template": {
                "metadata": {
                    "annotations": {
                        "megagpu.io/sim-work": WORK.get(model, "3000"),
                        **(annotations or {}),
                    }
                },
                "spec": {"containers": [{"name": "w", "image": "busybox"}]},
            },
        },
    }


def create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


def get(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return found


def wait_phase(
    api: client.ApiClient,
    namespace: str,
    name: str,
    phases: tuple[str, ...],
    timeout_s: float = 120,
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        gw = get(api, namespace, name)
        return gw if (gw.get("status") or {}).get("phase") in phases else None

    return wait_for(reached, timeout_s=timeout_s, what=f"{name} to reach {phases}")


def condition(gw: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in gw["status"]["conditions"] if c["type"] == kind)


def policy_status(api: client.ApiClient) -> dict[str, Any]:
    found = client.CustomObjectsApi(api).get_cluster_custom_object(
        GROUP, VERSION, "gpuschedulingpolicies", "default"
    )
    return dict(found.get("status") or {})
