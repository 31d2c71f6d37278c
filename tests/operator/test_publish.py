"""The policy's progress: one patch per update, a read only after a conflict."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from kubernetes.client.exceptions import ApiException

from megagpu.core import qpolicy
from megagpu.kube import retry
from megagpu.operator import publish


class Policies:
    """The GpuSchedulingPolicy ``default`` with resourceVersion preconditions."""

    def __init__(self) -> None:
        self.rv, self.status, self.calls = 1, {}, []  # type: ignore[var-annotated]
        self.fail: list[int] = []

    def get_cluster_custom_object(self, *_: Any) -> dict[str, Any]:
        self.calls.append("get")
        return {"metadata": {"resourceVersion": str(self.rv)}, "status": dict(self.status)}

    def patch_cluster_custom_object_status(self, *args: Any) -> dict[str, Any]:
        self.calls.append("patch")
        if self.fail:
            raise ApiException(status=self.fail.pop(0))
        if args[-1]["metadata"]["resourceVersion"] != str(self.rv):
            raise ApiException(status=409)
        self.rv += 1
        self.status = args[-1]["status"]
        return {"metadata": {"resourceVersion": str(self.rv)}}

    def edit_spec(self) -> None:
        self.rv += 1


def policy(version: int) -> qpolicy.QPolicy:
    p = qpolicy.QPolicy()
    p.version = version
    return p


def test_one_patch_per_update_and_a_read_only_after_a_conflict() -> None:
    api, publisher = Policies(), publish.Publisher()
    publisher.publish(api, policy(1))  # type: ignore[arg-type]
    publisher.publish(api, policy(2))  # type: ignore[arg-type]
    assert api.calls == ["get", "patch", "patch"] and api.status["version"] == 2
    api.edit_spec()  # a user edits the spec: the remembered resourceVersion is stale
    publisher.publish(api, policy(3))  # type: ignore[arg-type]
    assert api.calls[3:] == ["patch", "get", "patch"] and api.status["version"] == 3


def test_an_older_version_never_replaces_a_newer_one() -> None:
    api = Policies()
    publish.Publisher().publish(api, policy(5))  # type: ignore[arg-type]
    late = publish.Publisher()  # another replica's view, or a thread that learned v4
    late.publish(api, policy(4))  # type: ignore[arg-type]
    assert api.status["version"] == 5
    ours = publish.Publisher()
    ours.publish(api, policy(6))  # type: ignore[arg-type]
    ours.publish(api, policy(5))  # type: ignore[arg-type]
    assert api.status["version"] == 6


def test_a_refusing_api_server_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry.time, "sleep", mock.Mock())
    api = Policies()
    api.fail = [429, 503]
    publish.Publisher().publish(api, policy(1))  # type: ignore[arg-type]
    assert api.status["version"] == 1 and api.calls == ["get", "patch", "patch", "patch"]
