"""Kubernetes JSON <-> core.model: the only place that knows both shapes."""

from __future__ import annotations

from typing import Any

from megagpu.core import model
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
