"""Waiting pods and prediction errors: Events, the first-wait annotation, metrics.

The extender's filter keeps a pod pending for a busy, faster node with the reason "waiting
for NODE: ..."; kube-scheduler copies it into the pod's PodScheduled condition. The operator
records an Event on the GpuWorkload and writes the pod's ``megagpu.io/waiting-since`` once,
so the wait bound survives an extender restart. When the pod ends, the prediction it was
placed with is compared with its run time.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from megagpu.kube import client as kube_client
from megagpu.kube import names

LOG = logging.getLogger("megagpu.operator")
WAITING = "waiting for "
"""How the extender's wait reason starts (``core.waiting.plan``)."""
FAR_OFF = math.log(2.0)
"""A run time off its prediction by more than x2 either way gets a Warning Event."""


def waiting_message(pod: dict[str, Any]) -> str | None:
    """The pod's PodScheduled=False message when the extender keeps it waiting, else None."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            message = str(c.get("message") or "")
            return message if WAITING in message else None
    return None


def first_wait(pod: dict[str, Any]) -> str | None:
    """When the pod first waited: its condition's transition time (None when unknown)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            found = c.get("lastTransitionTime")
            return str(found) if found else None
    return None


def awaited(message: str | None) -> str | None:
    """The node a wait message names (``waiting for NODE: ...``), else None."""
    if not message or WAITING not in message:
        return None
    return message.split(WAITING, 1)[1].split(":", 1)[0]


def record_wait(core: client.CoreV1Api, gw: dict[str, Any], pod: dict[str, Any]) -> None:
    """An Event on the workload when it starts waiting for a node; once, the first-wait time.

    kube-scheduler rewrites the message at every retry (the predicted times move); the Event
    is recorded again only when the node waited for changes.
    """
    message = waiting_message(pod)
    if message is None:
        return
    before = next(
        (
            c.get("message")
            for c in (gw.get("status") or {}).get("conditions") or []
            if c.get("type") == "Unschedulable" and c.get("status") == "True"
        ),
        None,
    )
    if awaited(before) != awaited(message):
        kopf.info(gw, reason="Waiting", message=message[:1000])
    meta = pod.get("metadata") or {}
    since = first_wait(pod)
    if since is None or names.ANN_WAITING_SINCE in (meta.get("annotations") or {}):
        return
    try:
        kube_client.send(
            core.patch_namespaced_pod,
            meta.get("name"),
            gw["metadata"]["namespace"],
            {"metadata": {"annotations": {names.ANN_WAITING_SINCE: since}}},
        )
    except Exception as e:  # noqa: BLE001 - best effort: the extender remembers the wait too
        # a restarted extender then counts the wait from its own first sight of the pod; the
        # workload's status is written whatever happened here
        if not (isinstance(e, ApiException) and e.status == 404):  # 404: the pod is gone
            LOG.warning("could not record when %s began to wait: %r", meta.get("name"), e)


def prediction_error(decision: dict[str, Any], duration_s: float | None) -> float | None:
    """log(actual / predicted) of a finished run, when both are known and positive."""
    predicted = decision.get("predictedSeconds")
    if not isinstance(predicted, int | float) or isinstance(predicted, bool):
        return None
    if duration_s is None or duration_s <= 0 or not predicted > 0:
        return None
    return math.log(duration_s / predicted)


def report_error(gw: dict[str, Any], metrics: Any, log_ratio: float) -> None:
    """Observe the error in the metrics; a Warning Event when it is off by more than x2."""
    if metrics is not None:
        metrics.prediction_error.observe(abs(1.0 - math.exp(-log_ratio)))
        metrics.prediction_log_ratio.observe(log_ratio)
    if abs(log_ratio) > FAR_OFF:
        kopf.warn(
            gw,
            reason="PredictionOff",
            message=f"ran {math.exp(log_ratio):.2f}x the predicted run time",
        )
