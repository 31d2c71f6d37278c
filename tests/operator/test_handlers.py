"""Handlers with a mocked API: stopped pods are never learned, nodes come from the watch's
cache, bad template fields end as a status condition, and kopf watches pods server-side."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any
from unittest import mock

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from megagpu.kube import qstore, retry
from megagpu.operator import handlers, registry, watchdog
from tests.helpers import node


class Store:
    """A Q-state store that records saves."""

    def __init__(self) -> None:
        self.saved: list[Any] = []
        self.seen_version: str | None = None

    def load(self, cached: bool = False) -> qstore.Loaded:
        return qstore.Loaded(None, None, None)

    def history(self) -> list[tuple[int, str]]:
        return []

    def save(self, policy: Any, version: Any) -> str:
        self.saved.append(policy)
        return str(len(self.saved))


@pytest.fixture
def memo(monkeypatch: pytest.MonkeyPatch) -> handlers.Memo:
    for name in ("info", "warn"):
        monkeypatch.setattr(kopf, name, mock.Mock())
    api = mock.Mock()
    m = handlers.Memo(api.core, api.custom, Store(), "megagpu-system")  # type: ignore[arg-type]
    m.nodes["n1"] = node("n1", "h100", devices=8, fp16=800.0, gbps=3000.0)
    m.node_labels["n1"] = {"megagpu.io/backend.cuda": "true"}
    return m


def ago(seconds: float) -> str:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def workload(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "w", "namespace": "ml", "uid": "u", "creationTimestamp": ago(60)},
        "spec": {"gpus": 1, "backends": ["cuda"], "startTimeoutSeconds": 5, "maxRetries": 1},
        "status": {"phase": "Scheduling", "attempts": 1, "podName": "w-a1", **status},
    }


def failed_pod(name: str = "w-a1") -> dict[str, Any]:
    """A pod a real kubelet marked Failed after it was deleted."""
    terminated = {"exitCode": 137, "reason": "Error", "finishedAt": ago(0)}
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"uid-{name}",
            "labels": {"megagpu.io/workload": "w"},
            "annotations": {
                "megagpu.io/gpus": "1",
                "megagpu.io/backends": "cuda",
                "megagpu.io/model": "m",
                "megagpu.io/workload-type": "inference",
                "megagpu.io/assigned-backend": "cuda",
            },
            "deletionTimestamp": ago(0),
        },
        "spec": {"nodeName": "n1"},
        "status": {
            "phase": "Failed",
            "startTime": ago(10),
            "containerStatuses": [{"state": {"terminated": terminated}}],
        },
    }


def test_a_start_timeout_records_why_before_it_deletes_the_pod(memo: handlers.Memo) -> None:
    calls = mock.Mock()
    memo.custom.patch_namespaced_custom_object_status.side_effect = lambda *a: calls.patch(a[-1])
    deleted = mock.Mock()  # what the reply's .read() is called on
    memo.core.delete_namespaced_pod.side_effect = lambda *a, **k: [calls.delete(a[0]), deleted][1]

    fields = watchdog.check(workload(attemptStartedAt=ago(30)), memo)

    first, second = calls.mock_calls
    stopped = first.args[0]["status"]["stopped"]
    assert first.args[0] == {"status": {"stopped": stopped}}
    assert (stopped["pod"], stopped["reason"]) == ("w-a1", "StartTimeout")
    assert second == mock.call.delete("w-a1")
    assert fields is not None and fields["phase"] == "Pending" and fields["retryAt"]
    assert fields["conditions"][-1]["message"].endswith("startTimeoutSeconds=5")


def test_a_failed_delete_leaves_the_attempt_to_be_stopped_again(memo: handlers.Memo) -> None:
    memo.core.delete_namespaced_pod.side_effect = ApiException(status=500, reason="boom")
    with pytest.raises(ApiException):
        watchdog.check(workload(attemptStartedAt=ago(30)), memo)


def test_the_kubelets_failed_end_of_a_stopped_pod_is_not_learned(memo: handlers.Memo) -> None:
    stopped = {"pod": "w-a1", "reason": "StartTimeout", "at": ago(1)}
    gw = workload(phase="Pending", retryAt=ago(-5), stopped=stopped)
    memo.custom.get_namespaced_custom_object.return_value = gw
    pod = failed_pod()
    assert not handlers.news(pod, gw["status"])

    handlers.follow(pod, memo)

    assert memo.store.saved == []  # type: ignore[attr-defined]
    memo.custom.patch_namespaced_custom_object_status.assert_not_called()


def test_a_pod_that_fails_on_its_own_is_learned_without_listing_nodes(
    memo: handlers.Memo,
) -> None:
    memo.custom.get_namespaced_custom_object.return_value = workload(node="n1")
    memo.custom.get_cluster_custom_object.return_value = {"metadata": {"resourceVersion": "1"}}
    pod = failed_pod()
    del pod["metadata"]["deletionTimestamp"]

    handlers.follow(pod, memo)

    assert len(memo.store.saved) == 1  # type: ignore[attr-defined]
    memo.core.list_node.assert_not_called()
    memo.core.read_node.assert_not_called()  # n1 is in the watch's cache
    (call,) = memo.custom.patch_namespaced_custom_object_status.mock_calls
    assert call.args[-1]["status"]["reward"] < 0


def test_a_node_the_watch_has_not_seen_is_read_by_name(memo: handlers.Memo) -> None:
    raw = {"metadata": {"name": "n2", "labels": {"megagpu.io/backend.cpu": "true"}}}
    memo.core.read_node.return_value.data = json.dumps(raw)
    found = handlers._node(memo, "n2")
    assert found is not None and found.backends == ("cpu",)
    assert handlers._node(memo, "n2") is memo.nodes["n2"]
    memo.core.read_node.assert_called_once()
    handlers.remember_node(raw, "DELETED", memo)
    assert "n2" not in memo.nodes


def test_a_gpu_container_that_does_not_exist_is_a_status_condition(
    memo: handlers.Memo,
) -> None:
    gw = workload()
    gw["metadata"]["generation"] = 1
    gw["spec"]["gpuContainer"] = "model"
    gw["spec"]["template"] = {"spec": {"containers": [{"name": "main", "image": "i"}]}}

    fields = handlers.start_attempt(gw, 1, memo)

    assert fields["phase"] == "Failed"
    accepted = next(c for c in fields["conditions"] if c["type"] == "Accepted")
    assert accepted["status"] == "False" and accepted["reason"] == "InvalidTemplate"
    assert "spec.gpuContainer names 'model'" in accepted["message"]
    memo.core.create_namespaced_pod.assert_not_called()


def test_kopf_watches_only_megagpu_pods_server_side() -> None:
    settings = kopf.OperatorSettings()
    reg = registry.make_registry()
    (configure,) = [h for h in reg._activities.get_all_handlers() if h.id.endswith(".configure")]
    configure.fn(settings=settings)
    pods = kopf.Resource("", "v1", "pods", kind="Pod", namespaced=True)
    assert list(settings.watching.label_selectors.collect(pods)) == ["megagpu.io/workload"]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_status_patch_refused_for_now_is_retried(
    memo: handlers.Memo, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", slept.append)
    refusal = ApiException(status=status, reason="busy")
    memo.custom.patch_namespaced_custom_object_status.side_effect = [refusal, refusal, None]
    handlers.patch_status(memo, workload(), {"phase": "Running"})
    assert memo.custom.patch_namespaced_custom_object_status.call_count == 3
    assert len(slept) == 2


def test_a_status_patch_rejected_for_good_is_not_retried(memo: handlers.Memo) -> None:
    memo.custom.patch_namespaced_custom_object_status.side_effect = ApiException(status=422)
    with pytest.raises(ApiException):
        handlers.patch_status(memo, workload(), {"phase": "Running"})
    assert memo.custom.patch_namespaced_custom_object_status.call_count == 1


def waiting_pod(bound_ago: float | None) -> dict[str, Any]:
    """The attempt's pod as the watch keeps it: kept pending on purpose, then bound or not."""
    pod: dict[str, Any] = {
        "metadata": {"name": "w-a1", "annotations": {"megagpu.io/waiting-since": ago(100)}},
        "spec": {"nodeName": None},
        "status": {},
    }
    if bound_ago is not None:
        pod["spec"]["nodeName"] = "n1"
        pod["status"]["conditions"] = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": ago(bound_ago)}
        ]
    return pod


def test_a_deliberate_wait_does_not_count_against_the_start_timeout(
    memo: handlers.Memo,
) -> None:
    memo.pods[("ml", "w-a1")] = waiting_pod(None)  # still waiting, 100 s past a 5 s timeout
    assert watchdog.check(workload(attemptStartedAt=ago(100)), memo) is None
    memo.pods[("ml", "w-a1")] = waiting_pod(2)  # bound 2 s ago: its clock runs from there
    assert watchdog.check(workload(attemptStartedAt=ago(100)), memo) is None
    memo.pods[("ml", "w-a1")] = waiting_pod(30)  # bound 30 s ago and still not running
    fields = watchdog.check(workload(attemptStartedAt=ago(100)), memo)
    assert fields is not None
    assert fields["conditions"][-1]["message"].endswith("startTimeoutSeconds=5")


def test_queue_by_size_gives_the_pod_the_class_of_its_predicted_size(memo: handlers.Memo) -> None:
    from megagpu.core import fleet, model, qpolicy
    from megagpu.kube import convert

    gw = workload()
    gw["metadata"]["generation"] = 1
    gw["spec"] |= {"model": "m", "work": {"amount": 3600.0}, "priority": "high"}
    gw["spec"]["template"] = {"spec": {"containers": [{"name": "main", "image": "i"}]}}
    memo.queue_by_size = True

    def created_class() -> str:
        handlers.start_attempt(gw, 1, memo)
        pod = memo.core.create_namespaced_pod.call_args.args[1]
        return str(pod["spec"]["priorityClassName"])

    assert created_class() == "megagpu-high-q4"  # nothing learned yet: the middle bucket
    policy = qpolicy.QPolicy()
    w = convert.workload_from_pod(memo.core.create_namespaced_pod.call_args.args[1])
    for i in range(3):  # 3,600 units in 60 s on the h100: a one-minute job
        done = model.Outcome(
            f"o{i}", w, "n1", "cuda", "h100", 60.0, work=3600.0, work_source="reported"
        )
        policy.observe(done)
    t4 = node("t4", "t4", devices=1, fp16=65.0, gbps=320.0)
    policy.know(fleet.Fleet.build([memo.nodes["n1"], t4]))  # as learning left it: both kinds
    loads: list[bool] = []

    def load(cached: bool = False) -> qstore.Loaded:
        loads.append(cached)
        return qstore.Loaded(policy, "v2", None)

    memo.store.load = load  # type: ignore[method-assign]
    # no state was found a moment ago: not read again for every pod
    assert created_class() == "megagpu-high-q4" and loads == []
    memo.store.seen_version = "v2"  # type: ignore[misc]  # the operator read or wrote one
    assert created_class() == "megagpu-high-q0" and loads == [True]
    assert created_class() == "megagpu-high-q0" and loads == [True]  # parsed once per version
    # pinned to a T4 node: sized by the T4 (never run there: its datasheet, about 10x slower
    # than the H100's), not by the H100 it cannot run on
    memo.nodes["t4"] = t4
    memo.node_labels["t4"] = {"megagpu.io/backend.cuda": "true", "pool": "t4"}
    gw["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "t4"}
    assert created_class() == "megagpu-high-q2"
    del gw["spec"]["template"]["spec"]["nodeSelector"]
    policy.params = dataclasses.replace(policy.params, mode="shadow")  # the baseline decides
    assert created_class() == "megagpu-high-q4"
    memo.queue_by_size = False
    assert created_class() == "megagpu-high"


def test_missing_queue_classes_turn_queue_by_size_off_and_the_attempt_is_retried(
    memo: handlers.Memo,
) -> None:
    gw = workload()
    gw["spec"]["template"] = {"spec": {"containers": [{"name": "main", "image": "i"}]}}
    memo.queue_by_size = True
    refused = ApiException(status=403, reason="Forbidden")
    refused.body = "no PriorityClass with name megagpu-normal-q4 was found"
    memo.core.create_namespaced_pod.side_effect = refused
    with pytest.raises(kopf.TemporaryError):
        handlers.start_attempt(gw, 1, memo)
    assert memo.queue_by_size is False
    memo.core.create_namespaced_pod.side_effect = None
    handlers.start_attempt(gw, 1, memo)
    pod = memo.core.create_namespaced_pod.call_args.args[1]
    assert pod["spec"]["priorityClassName"] == "megagpu-normal"


def test_a_pod_whose_annotations_the_policy_cannot_read_gets_the_middle_class(
    memo: handlers.Memo,
) -> None:
    from megagpu.kube import names

    gw = workload()
    gw["spec"]["template"] = {
        "metadata": {"annotations": {names.ANN_WORK_AMOUNT: "lots"}},
        "spec": {"containers": [{"name": "main", "image": "i"}]},
    }
    memo.queue_by_size = True
    handlers.start_attempt(gw, 1, memo)
    pod = memo.core.create_namespaced_pod.call_args.args[1]
    assert pod["spec"]["priorityClassName"] == "megagpu-normal-q4"
