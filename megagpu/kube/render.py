"""Render the pod of one GpuWorkload attempt (DESIGN 4 and 9.2)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from megagpu.core import model
from megagpu.kube import names, priorities

GPU_BACKENDS = ("cuda", "vulkan", "metal")
DOWNWARD_ENV = {
    "MEGAGPU_BACKEND": names.ANN_ASSIGNED_BACKEND,
    "MEGAGPU_DEVICES": names.ANN_ASSIGNED_DEVICES,
}


REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
AFFINITY = "spec.template.spec.affinity"


class TemplateError(ValueError):
    """The workload's pod template cannot be used; the message says why."""


def spec_backends(spec: dict[str, Any]) -> list[str]:
    """Acceptable backends in order; absent means all (metal left out for gpus > 1)."""
    backends = list(spec.get("backends") or model.BACKENDS)
    if int(spec.get("gpus", 1)) > 1 and "backends" not in spec:
        backends = [b for b in backends if b != "metal"]
    return backends


def pod_name(workload: str, attempt: int) -> str:
    """Deterministic pod name of an attempt, so a retried handler never makes a second pod."""
    return f"{workload}-a{attempt}"


def render_pod(gw: dict[str, Any], attempt: int, resource_mode: str = "megagpu") -> dict[str, Any]:
    """The pod of attempt ``attempt`` of GpuWorkload ``gw`` (a dict as the API returns it)."""
    meta, spec = gw["metadata"], gw.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    if not isinstance(template, dict):
        raise TemplateError("spec.template must be an object with metadata and spec")
    pod_spec = template.get("spec") or {}
    if not isinstance(pod_spec, dict) or not pod_spec.get("containers"):
        raise TemplateError("spec.template.spec.containers must list at least one container")
    if pod_spec.get("restartPolicy", "Never") != "Never":
        raise TemplateError(
            f"spec.template.spec.restartPolicy must be Never (got {pod_spec['restartPolicy']}):"
            " megagpu retries whole attempts itself"
        )
    gpus = int(spec.get("gpus", 1))
    backends = spec_backends(spec)
    tmeta = template.get("metadata") or {}
    labels = {**(tmeta.get("labels") or {}), names.LABEL_WORKLOAD: meta["name"]}
    annotations = {
        **(tmeta.get("annotations") or {}),
        names.ANN_WORKLOAD_TYPE: spec.get("workloadType", "inference"),
        names.ANN_MODEL: spec.get("model", "unknown"),
        names.ANN_BACKENDS: ",".join(backends),
        names.ANN_GPUS: str(gpus),
        names.ANN_MEMORY: str(spec.get("memoryMiB", 0)),
        names.ANN_PRECISION: spec.get("precision", "fp16"),
        names.ANN_PRIORITY: spec.get("priority", "normal"),
    }
    declared = spec.get("work") or {}
    if isinstance(declared, dict) and "amount" in declared:
        annotations[names.ANN_WORK_AMOUNT] = str(declared["amount"])
        annotations[names.ANN_WORK_UNIT] = str(declared.get("unit", ""))
    deadline = _deadline(meta.get("creationTimestamp"), spec.get("deadlineSeconds"))
    if deadline is not None:
        annotations[names.ANN_DEADLINE] = deadline
    pod_spec = {**pod_spec, "restartPolicy": "Never", "schedulerName": names.SCHEDULER_NAME}
    pod_spec["priorityClassName"] = priorities.class_name(spec.get("priority", "normal"))
    pod_spec["affinity"] = _affinity(pod_spec.get("affinity"), backends)
    # only one container (the workload's own) asks for the devices: the kubelet would count a
    # limit on every container (sidecars, init containers) as that many more devices
    asks = gpu_container(spec, pod_spec["containers"])
    pod_spec["containers"] = [
        _container(c, gpus if i == asks else 0, backends, resource_mode)
        for i, c in enumerate(pod_spec["containers"])
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(meta["name"], attempt),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": names.API_VERSION,
                    "kind": "GpuWorkload",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
    }


def _deadline(created: Any, seconds: Any) -> str | None:
    """The absolute deadline as RFC 3339 text, when the workload has one."""
    if not isinstance(seconds, int | float) or not isinstance(created, str):
        return None
    try:
        start = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    try:
        end = start + dt.timedelta(seconds=float(seconds))
    except (OverflowError, ValueError) as e:  # beyond year 9999, or not a finite number
        raise TemplateError(
            f"spec.deadlineSeconds={seconds} puts the deadline out of range: give a number of "
            "seconds that ends before the year 10000"
        ) from e
    return end.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gpu_container(spec: dict[str, Any], containers: list[Any]) -> int:
    """Index of the container that gets the devices: ``spec.gpuContainer``, else the first."""
    wanted = spec.get("gpuContainer")
    if not wanted:
        return 0
    found = [i for i, c in enumerate(containers) if isinstance(c, dict) and c.get("name") == wanted]
    if not found:
        listed = ", ".join(str(c.get("name")) for c in containers if isinstance(c, dict))
        raise TemplateError(
            f"spec.gpuContainer names {wanted!r}, which is not one of the template's"
            f" containers ({listed})"
        )
    return found[0]


def _affinity(existing: Any, backends: list[str]) -> dict[str, Any]:
    """The user's affinity with megagpu's backend requirement added to it, never replacing it.

    Node selector terms are ORed and a term's expressions ANDed, so (user's terms) AND (any
    acceptable backend) is every user term once per backend, with the backend's expression added.
    """
    affinity = copy.deepcopy(existing) if existing is not None else {}
    if not isinstance(affinity, dict) or not isinstance(affinity.get("nodeAffinity", {}), dict):
        raise TemplateError(f"{AFFINITY} and its nodeAffinity must be objects")
    node = affinity.setdefault("nodeAffinity", {})
    ours = [
        {"key": names.LABEL_BACKEND.format(backend=b), "operator": "In", "values": ["true"]}
        for b in backends
    ]
    node[REQUIRED] = {
        "nodeSelectorTerms": [
            {**term, "matchExpressions": [*(term.get("matchExpressions") or []), expression]}
            for term in _user_terms(node.get(REQUIRED)) or [{}]
            for expression in ours
        ]
    }
    return affinity


def _user_terms(required: Any) -> list[dict[str, Any]]:
    """The node selector terms of the template's required node affinity (checked)."""
    terms = (required or {}).get("nodeSelectorTerms") if isinstance(required, dict | None) else 0
    if not isinstance(terms, list | None):
        raise TemplateError(f"{AFFINITY}.nodeAffinity.{REQUIRED}.nodeSelectorTerms is not a list")
    for term in terms or []:
        if not isinstance(term, dict) or not isinstance(term.get("matchExpressions", []), list):
            raise TemplateError(
                f"every nodeSelectorTerm of {AFFINITY} is an object with a list of matchExpressions"
            )
    return list(terms or [])


def _container(container: Any, gpus: int, backends: list[str], mode: str) -> dict[str, Any]:
    if not isinstance(container, dict):
        raise TemplateError("every container in spec.template.spec.containers must be an object")
    c = copy.deepcopy(container)
    env = [e for e in c.get("env") or [] if e.get("name") not in DOWNWARD_ENV]
    for var, annotation in DOWNWARD_ENV.items():
        env.append(
            {
                "name": var,
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{annotation}']"}},
            }
        )
    c["env"] = env
    limits = dict((c.get("resources") or {}).get("limits") or {})
    if gpus >= 1 and all(b in GPU_BACKENDS for b in backends):
        if mode == "vendor" and backends == ["cuda"]:
            limits[names.RESOURCE_NVIDIA] = str(gpus)
        else:
            limits[names.RESOURCE_GPU] = str(gpus)
    if limits:
        c["resources"] = {**(c.get("resources") or {}), "limits": limits}
    return c
