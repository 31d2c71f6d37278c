"""Kubernetes JSON <-> core.model: the only place that knows both shapes."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any

from megagpu.core import model, qpolicy, work
from megagpu.kube import names

NODE_CPU = "32"
NODE_MEMORY = "256Gi"
NODE_PODS = "110"


def node_labels(node: model.Node) -> dict[str, str]:
    """The labels of DESIGN 9.3 for a node."""
    labels = {names.LABEL_BACKEND.format(backend=b): "true" for b in node.backends}
    labels.update(
        {
            names.LABEL_GPU_PRODUCT: names.label_value(node.device_class),
            names.LABEL_GPU_COUNT: str(node.devices),
            names.LABEL_GPU_MEMORY: str(node.memory_mib_per_device),
            "kubernetes.io/hostname": node.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
        }
    )
    return labels


def fake_node(node: model.Node) -> dict[str, Any]:
    """A kwok fake Node with megagpu's labels, benchmarks and ``megagpu.io/gpu`` resources."""
    resources = {
        "cpu": NODE_CPU,
        "memory": NODE_MEMORY,
        "pods": NODE_PODS,
        names.RESOURCE_GPU: str(node.devices),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": node_labels(node),
            "annotations": {
                names.ANN_KWOK_NODE: "fake",
                "megagpu.io/benchmarks": (
                    f"fp32={node.benchmarks.fp32_tflops},fp16={node.benchmarks.fp16_tflops},"
                    f"gbps={node.benchmarks.mem_gbps}"
                ),
            },
        },
        "spec": {},
        "status": {"capacity": resources, "allocatable": dict(resources)},
    }


class ConvertError(ValueError):
    """A Kubernetes object lacks or garbles what megagpu needs; the message names the field."""


def _annotation(pod: dict[str, Any], key: str, default: str | None = None) -> str:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(key, default)
    if value is None:
        raise ConvertError(f"pod annotation {key} is missing")
    return str(value)


def _int_annotation(pod: dict[str, Any], key: str, default: str) -> int:
    text = _annotation(pod, key, default)
    try:
        return int(text)
    except ValueError as e:
        raise ConvertError(f"pod annotation {key} must be an integer, got {text!r}") from e


def is_megagpu_pod(pod: dict[str, Any]) -> bool:
    """Whether the pod opted in with the ``megagpu.io/workload`` label."""
    return names.LABEL_WORKLOAD in ((pod.get("metadata") or {}).get("labels") or {})


def workload_from_pod(pod: dict[str, Any]) -> model.Workload:
    """The workload a megagpu pod carries in its annotations (DESIGN 9.2)."""
    meta = pod.get("metadata") or {}
    backends = tuple(
        b.strip()
        for b in _annotation(pod, names.ANN_BACKENDS, ",".join(model.BACKENDS)).split(",")
        if b.strip()
    )
    gpus = _int_annotation(pod, names.ANN_GPUS, "1")
    if gpus > 1:
        backends = tuple(b for b in backends if b != "metal") or backends
    try:
        return model.Workload(
            uid=str(meta.get("uid") or meta.get("name") or "?"),
            workload_type=_annotation(pod, names.ANN_WORKLOAD_TYPE, "inference"),
            model=_annotation(pod, names.ANN_MODEL, "unknown"),
            gpus=gpus,
            memory_mib=_int_annotation(pod, names.ANN_MEMORY, "0"),
            precision=_annotation(pod, names.ANN_PRECISION, "fp16"),
            backends=backends,
            priority=_annotation(pod, names.ANN_PRIORITY, "normal"),
            declared=_declared(pod),
        )
    except model.ValidationError as e:
        raise ConvertError(f"pod annotations describe an invalid workload: {e}") from e


def _declared(pod: dict[str, Any]) -> model.Work | None:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(names.ANN_WORK_AMOUNT)
    if text is None:
        return None
    try:
        amount = float(text)
    except ValueError as e:
        raise ConvertError(
            f"pod annotation {names.ANN_WORK_AMOUNT} is not a number: {text!r}"
        ) from e
    return model.Work(amount, str(annotations.get(names.ANN_WORK_UNIT, "")))


def work_report(pod: dict[str, Any]) -> work.Report | None:
    """The work a finished pod's containers reported in their termination messages, if any.

    Reports of several containers add up. A message that is not JSON is an unusable report
    only when no container reported (sidecars may write free text there).
    """
    total, unit, found, garbled = 0.0, "", False, False
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        text = ((status.get("state") or {}).get("terminated") or {}).get("message")
        if not text:
            continue
        try:
            doc = json.loads(text)
        except ValueError:
            garbled = True
            continue
        if not isinstance(doc, dict) or names.REPORT_WORK not in doc:
            garbled = garbled or not isinstance(doc, dict)
            continue
        value, said = doc[names.REPORT_WORK], doc.get(names.REPORT_UNIT, "")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            return work.Report(
                None, problem=f"{names.REPORT_WORK} must be a number > 0, got {value!r}"
            )
        if not isinstance(said, str) or (unit and said and said != unit):
            return work.Report(None, problem=f"containers reported the units {unit!r} and {said!r}")
        total, unit, found = total + float(value), unit or said, True
    if found:
        return work.Report(total, unit)
    if garbled:
        return work.Report(None, problem="the termination message is not a JSON object")
    return None


def _benchmarks(node: dict[str, Any], gpunode: dict[str, Any] | None) -> model.Benchmarks:
    """The node's measured benchmarks, else its annotation's (the datasheet figures).

    A node with GPUs is measured by its GPU backends only: the CPU's GEMM says nothing of them.
    """
    best: dict[str, float] = {}
    status = (gpunode or {}).get("status") or {}
    backends = status.get("backends") if isinstance(status.get("backends"), dict) else {}
    if status.get("devices"):  # it has GPUs
        backends = {k: v for k, v in backends.items() if k != "cpu"}
    for backend in backends.values():
        bench = (backend.get("benchmarks") if isinstance(backend, dict) else None) or {}
        for ours, theirs in (
            ("fp32_tflops", "fp32Tflops"),
            ("fp16_tflops", "fp16Tflops"),
            ("mem_gbps", "memGBps"),
        ):
            if isinstance(bench.get(theirs), int | float):
                best[ours] = max(best.get(ours, 0.0), float(bench[theirs]))
    if not best:
        text = ((node.get("metadata") or {}).get("annotations") or {}).get(
            "megagpu.io/benchmarks", ""
        )
        pairs = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
        keys = {"fp32": "fp32_tflops", "fp16": "fp16_tflops", "gbps": "mem_gbps"}
        try:
            best = {keys[k]: float(v) for k, v in pairs.items() if k in keys}
        except ValueError:
            best = {}
    try:
        return model.Benchmarks(**best)
    except model.ValidationError:
        return model.Benchmarks()


def node_from_k8s(node: dict[str, Any], gpunode: dict[str, Any] | None = None) -> model.Node:
    """A schedulable node from a Node (labels of DESIGN 9.3) and its GpuNode, if any."""
    meta, status = node.get("metadata") or {}, node.get("status") or {}
    labels = meta.get("labels") or {}
    backends = tuple(
        b for b in model.BACKENDS if labels.get(names.LABEL_BACKEND.format(backend=b)) == "true"
    )
    allocatable = status.get("allocatable") or {}
    try:
        # one GPU is one device whichever plugin advertises it (DESIGN 4: never both)
        devices = max(
            int(allocatable.get(r, "0")) for r in (names.RESOURCE_GPU, names.RESOURCE_NVIDIA)
        )
        memory = int(labels.get(names.LABEL_GPU_MEMORY, "0"))
    except ValueError:
        devices, memory = 0, 0
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    healthy = ready and not (node.get("spec") or {}).get("unschedulable", False)
    device_ids = _device_ids(gpunode)
    if device_ids is not None:
        devices = len(device_ids)
    return model.Node(
        name=str(meta.get("name")),
        device_class=labels.get(names.LABEL_GPU_PRODUCT, "cpu" if devices == 0 else "unknown"),
        backends=backends or ("cpu",),
        devices=devices,
        memory_mib_per_device=memory,
        benchmarks=_benchmarks(node, gpunode),
        healthy=healthy,
        device_ids=device_ids or (),
    )


def _device_ids(gpunode: dict[str, Any] | None) -> tuple[tuple[int, str], ...] | None:
    """(index, id) of the healthy devices the GpuNode names; None when it names none."""
    listed = ((gpunode or {}).get("status") or {}).get("devices")
    if not isinstance(listed, list):
        return None
    found = {}
    for d in listed:
        if isinstance(d, dict) and d.get("healthy") is True and isinstance(d.get("index"), int):
            found[d["index"]] = str(d.get("id") or d.get("uuid") or "")
    return tuple(sorted(found.items()))


def assigned_devices(pod: dict[str, Any]) -> tuple[str, tuple[int, ...]] | None:
    """(node, device indices) a live megagpu pod holds, or None when it holds none."""
    phase = (pod.get("status") or {}).get("phase")
    node = (pod.get("spec") or {}).get("nodeName")
    if not node or phase in ("Succeeded", "Failed"):
        return None
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(
        names.ANN_ASSIGNED_DEVICES, ""
    )
    try:
        return str(node), tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        return None


def policy_status(policy: qpolicy.QPolicy, configmap: str, updated: str) -> dict[str, Any]:
    """The GpuSchedulingPolicy status of a policy; ``updated`` is an RFC 3339 time."""
    return {
        "version": policy.version,
        "decisions": policy.decisions,
        "updates": policy.updates,
        "epsilon": round(policy.epsilon, 4),
        "rewardEma": round(policy.reward_ema, 4),
        "recentRewards": [round(r, 4) for r in policy.recent_rewards],
        "phase": policy.phase,
        "lastUpdated": updated,
        "stateConfigMap": configmap,
    }


def parse_time(text: Any) -> dt.datetime | None:
    """An RFC 3339 time from the API, or None when absent or malformed."""
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


DECISION_TOP = 5
"""Alternatives kept in a decision record."""


def decision(
    mode: str,
    node: str,
    values: dict[str, float],
    node_scores: dict[str, int],
    version: int,
    reason: str,
    predictions: Mapping[str, model.Prediction | None] | None = None,
) -> dict[str, Any]:
    """The ``status.decision`` record: the chosen node and the best alternatives by value.

    ``predictions``: node -> predicted run time (with its log spread) where the policy has one.
    """
    ranked = sorted((n for n in values if n != node), key=lambda n: -values[n])[:DECISION_TOP]
    predictions = predictions or {}

    def predicted(n: str) -> dict[str, float | None]:
        p = predictions.get(n)
        return {
            "predictedSeconds": round(p.seconds, 1) if p else None,
            "predictedSigma": round(p.sigma, 3) if p else None,
        }

    return {
        "mode": mode,
        "score": int(node_scores.get(node, 10)),
        "qValues": {n: round(values[n], 4) for n in [node, *ranked] if n in values},
        "alternatives": [
            {
                "node": n,
                "score": int(node_scores.get(n, 0)),
                "qValue": round(values[n], 4),
                **predicted(n),
            }
            for n in ranked
        ],
        "policyVersion": version,
        "reason": reason[:256],
        **predicted(node),
    }
