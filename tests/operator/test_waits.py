"""Waiting Events, the first-wait annotation and prediction-error metrics (issue 18)."""

from __future__ import annotations

import math
from typing import Any
from unittest import mock

import kopf
import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from megagpu.operator import handlers, metrics, waits
from tests.operator.test_handlers import memo, workload  # noqa: F401 - the fixture

WAITING = "0/2 nodes are available: 2 waiting for fast-0: predicted finish 15 s vs 100 s on slow-0."


def pending(message: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastTransitionTime": "2027-01-15T08:00:00Z",
    }
    return {
        "metadata": {
            "name": "w-a1",
            "namespace": "ml",
            "labels": {"megagpu.io/workload": "w"},
            "annotations": annotations or {},
        },
        "spec": {},
        "status": {"phase": "Pending", "conditions": [condition]},
    }


def test_a_waiting_pod_gets_an_event_and_its_first_wait_written_once(
    memo: handlers.Memo,  # noqa: F811
) -> None:
    memo.custom.get_namespaced_custom_object.return_value = workload()
    handlers.follow(pending(WAITING), memo)
    kopf.info.assert_any_call(mock.ANY, reason="Waiting", message=WAITING)  # type: ignore[attr-defined]
    ((name, namespace, body), _) = memo.core.patch_namespaced_pod.call_args
    assert (name, namespace) == ("w-a1", "ml")
    assert body == {
        "metadata": {"annotations": {"megagpu.io/waiting-since": "2027-01-15T08:00:00Z"}}
    }
    memo.core.patch_namespaced_pod.reset_mock()
    again = pending(WAITING + " ", {"megagpu.io/waiting-since": "2027-01-15T08:00:00Z"})
    handlers.follow(again, memo)
    memo.core.patch_namespaced_pod.assert_not_called()


def test_the_event_is_recorded_again_only_for_another_node(memo: handlers.Memo) -> None:  # noqa: F811
    waiting_gw = workload(
        conditions=[{"type": "Unschedulable", "status": "True", "message": WAITING}]
    )
    moved = WAITING.replace("predicted finish 15 s", "predicted finish 14 s")
    waits.record_wait(memo.core, waiting_gw, pending(moved))
    kopf.info.assert_not_called()  # type: ignore[attr-defined]
    waits.record_wait(memo.core, waiting_gw, pending(moved.replace("fast-0", "fast-1")))
    kopf.info.assert_called_once()  # type: ignore[attr-defined]
    assert waits.awaited(WAITING) == "fast-0" and waits.awaited("devices busy") is None


def test_an_ordinary_unschedulable_pod_is_no_wait(memo: handlers.Memo) -> None:  # noqa: F811
    memo.custom.get_namespaced_custom_object.return_value = workload()
    handlers.follow(pending("0/2 nodes are available: 2 devices busy: 0 free, needs 1."), memo)
    memo.core.patch_namespaced_pod.assert_not_called()


def test_a_pod_gone_before_its_annotation_is_no_error(memo: handlers.Memo) -> None:  # noqa: F811
    memo.core.patch_namespaced_pod.side_effect = ApiException(status=404)
    waits.record_wait(memo.core, workload(), pending(WAITING))


def test_a_refused_annotation_never_stops_the_status_update(memo: handlers.Memo) -> None:  # noqa: F811
    """An older chart's RBAC (403) or a refusing API server: the status is written anyway."""
    memo.custom.get_namespaced_custom_object.return_value = workload()
    memo.core.patch_namespaced_pod.side_effect = ApiException(status=403, reason="Forbidden")
    handlers.follow(pending(WAITING), memo)
    assert memo.custom.patch_namespaced_custom_object_status.called


@pytest.mark.parametrize(
    ("decision", "duration", "expected"),
    [
        ({"predictedSeconds": 10.0}, 20.0, math.log(2.0)),
        ({"predictedSeconds": None}, 20.0, None),
        ({}, 20.0, None),
        ({"predictedSeconds": "soon"}, 20.0, None),
        ({"predictedSeconds": 0}, 20.0, None),
        ({"predictedSeconds": 10.0}, None, None),
        ({"predictedSeconds": 10.0}, 0.0, None),
    ],
)
def test_prediction_error(decision: dict[str, Any], duration: Any, expected: Any) -> None:
    assert waits.prediction_error(decision, duration) == (
        pytest.approx(expected) if expected is not None else None
    )


def test_errors_go_to_the_histograms_and_far_off_ones_to_an_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kopf, "warn", mock.Mock())
    registry = CollectorRegistry()
    m = metrics.Metrics(list, registry)
    waits.report_error({}, m, math.log(1.25))  # ran 25% longer: off by 20% of the actual
    waits.report_error({}, m, math.log(4.0))
    assert registry.get_sample_value("megagpu_operator_prediction_error_ratio_count") == 2
    assert (
        registry.get_sample_value("megagpu_operator_prediction_error_ratio_bucket", {"le": "0.2"})
        == 1
    )
    assert (
        registry.get_sample_value("megagpu_operator_prediction_log_ratio_bucket", {"le": "1.0"})
        == 1
    )
    kopf.warn.assert_called_once()  # type: ignore[attr-defined]
    assert "4.00x the predicted" in kopf.warn.call_args.kwargs["message"]  # type: ignore[attr-defined]
