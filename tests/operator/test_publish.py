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


def test_a_reset_state_is_published_though_it_has_fewer_updates() -> None:
    """A Q-state reset, deleted and made again, or rolled back must show, not the old one."""
    api, publisher = Policies(), publish.Publisher()
    learned = policy(7)
    learned.updates = 49
    publisher.publish(api, learned)  # type: ignore[arg-type]
    fresh = policy(1)  # the state was deleted and made again
    fresh.updates = 1
    publisher.publish(api, fresh)  # type: ignore[arg-type]
    assert api.status["updates"] == 1 and api.status["version"] == 1
    restarted = publish.Publisher()  # a new leader, whatever the status shows
    publisher_policy = policy(2)
    publisher_policy.updates = 2
    restarted.publish(api, publisher_policy)  # type: ignore[arg-type]
    assert api.status["updates"] == 2


def test_a_refusing_api_server_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry.time, "sleep", mock.Mock())
    api = Policies()
    api.fail = [429, 503]
    publish.Publisher().publish(api, policy(1))  # type: ignore[arg-type]
    assert api.status["version"] == 1 and api.calls == ["get", "patch", "patch", "patch"]


def test_an_unreachable_api_server_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """The update is saved already: a lost status patch must not undo the rest of the ending."""
    import urllib3

    monkeypatch.setattr(retry.time, "sleep", mock.Mock())
    api = Policies()

    def unreachable(*_: Any) -> dict[str, Any]:
        raise urllib3.exceptions.MaxRetryError(None, "/apis", "connection refused")

    api.patch_cluster_custom_object_status = unreachable  # type: ignore[method-assign]
    publisher = publish.Publisher()
    publisher.publish(api, policy(1))  # type: ignore[arg-type]
    api.patch_cluster_custom_object_status = Policies.patch_cluster_custom_object_status.__get__(
        api
    )  # type: ignore[method-assign]
    publisher.publish(api, policy(2))  # type: ignore[arg-type]
    assert api.status["version"] == 2
