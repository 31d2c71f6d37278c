"""Fake nodes a test makes for itself: kwok runs them, a label pins the test's workloads there."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client

LABEL = "megagpu.io/e2e"


@contextmanager
def made(api: client.ApiClient, label: str, bodies: list[dict[str, Any]]) -> Iterator[None]:
    """Create ``bodies`` (``convert.fake_node`` Nodes, status included) labelled ``label``.

    The status is written after the create (the API server ignores it there); the nodes are
    deleted when the block ends.
    """
    core = client.CoreV1Api(api)
    created = []
    try:
        for body in bodies:
            body = {**body, "metadata": {**body["metadata"]}}
            body["metadata"]["labels"] = {**body["metadata"].get("labels", {}), LABEL: label}
            status = body.pop("status")
            core.create_node(body)
            created.append(body["metadata"]["name"])
            core.patch_node_status(body["metadata"]["name"], {"status": status})
        yield
    finally:
        for name in created:
            core.delete_node(name)
