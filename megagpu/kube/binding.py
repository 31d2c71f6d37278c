"""Bind a pod with one write: a Binding whose annotations land on the pod with the node name."""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from megagpu.kube import client as kube_client


class AlreadyBound(Exception):
    """The pod was bound before; ``node`` is where (empty when unknown)."""

    def __init__(self, node: str) -> None:
        super().__init__(f"pod is already bound to {node or 'another node'}")
        self.node = node


def bind(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    uid: str,
    node: str,
    annotations: dict[str, str],
) -> None:
    """Create the Binding; raises AlreadyBound on a 409, ApiException otherwise."""
    metadata: dict[str, object] = {"name": name, "namespace": namespace, "uid": uid}
    if annotations:
        metadata["annotations"] = annotations
    body = {  # a dict: the client serializes it as is (model objects cost a walk per bind)
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": metadata,
        "target": {"kind": "Node", "apiVersion": "v1", "name": node},
    }
    try:
        kube_client.send(core.create_namespaced_binding, namespace, body)
    except ApiException as e:
        if e.status != 409:
            raise
        try:
            current = core.read_namespaced_pod(name, namespace).spec.node_name or ""
        except ApiException:
            current = ""
        raise AlreadyBound(current) from e
