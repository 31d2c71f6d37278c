"""The watchdog: one pass every few seconds over the followed GpuWorkloads.

It starts due retries, fails attempts stuck before Running, recovers a create handler's lost
write, and follows a pod again when the pod watch saw something the status does not show.
One loop over the watch's copies replaces a kopf timer per workload (a task, a live body and
a handler run each, thousands of them at scale); a pass with nothing to do calls no API.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import json
import logging
from typing import Any

from kubernetes.client.exceptions import ApiException

from megagpu.kube import client as kube_client
from megagpu.kube import convert, names
from megagpu.operator import handlers, status

LOG = logging.getLogger("megagpu.operator")
INTERVAL_S = 3.0
LOST_AFTER_S = 30.0
"""A handled workload this old without an attempt lost its create handler's status write."""


def check(gw: dict[str, Any], memo: handlers.Memo) -> dict[str, Any] | None:
    """Start a due retry or fail a stuck attempt: the status fields to write, or None."""
    old, spec = gw.get("status") or {}, gw.get("spec") or {}
    now = dt.datetime.now(dt.UTC)
    if not old.get("attempts"):
        # kopf runs (and after a crash reruns) the create handler until it succeeds; only a
        # handled workload without an attempt lost the handler's status write.
        created = convert.parse_time(gw["metadata"].get("creationTimestamp"))
        if gw.get("handled") and created and (now - created).total_seconds() > LOST_AFTER_S:
            return handlers.start_attempt(gw, 1, memo)
        return None
    retry_at = convert.parse_time(old.get("retryAt"))
    if retry_at is not None and now >= retry_at:
        return handlers.start_attempt(gw, int(old.get("attempts", 1)) + 1, memo)
    started = start_clock(gw, memo)
    timeout = int(spec.get("startTimeoutSeconds", 300))
    if (
        old.get("phase") in ("Pending", "Scheduling")
        and retry_at is None
        and started
        and (now - started).total_seconds() > timeout
    ):
        stop(gw, "StartTimeout", memo)
        return handlers.fail_attempt(
            gw,
            "StartTimeout",
            f"attempt {old.get('attempts', 1)} did not start within startTimeoutSeconds={timeout}",
            memo,
        )
    return None


def start_clock(gw: dict[str, Any], memo: handlers.Memo) -> dt.datetime | None:
    """When the current attempt's start timeout began to run (None: it does not run now).

    A pod the extender keeps pending on purpose (``waiting-since``, not bound yet) is not
    stuck: its wait is bounded by the extender's maximum wait and the deadline, so the clock
    runs from its bind, never through the wait.
    """
    old = gw.get("status") or {}
    started = convert.parse_time(old.get("attemptStartedAt"))
    pod = memo.pods.get((gw["metadata"]["namespace"], old.get("podName")))
    annotations = ((pod or {}).get("metadata") or {}).get("annotations") or {}
    if started is None or names.ANN_WAITING_SINCE not in annotations:
        return started
    if not (pod.get("spec") or {}).get("nodeName"):
        return None
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "True":
            bound = convert.parse_time(condition.get("lastTransitionTime"))
            return max(started, bound) if bound else started
    return started


def stop(gw: dict[str, Any], reason: str, memo: handlers.Memo) -> None:
    """Delete the current pod on purpose, having first recorded why in the status.

    The record comes first: a real kubelet marks a deleted pod Failed, and that end must read
    as this stop, never as a device failure to learn from. A failed delete leaves the attempt
    as it was, so the next pass stops it again.
    """
    old = gw.get("status") or {}
    stopped = {"pod": old["podName"], "reason": reason, "at": status.now_iso()}
    handlers.patch_status(memo, gw, {"stopped": stopped})
    try:
        kube_client.send(
            memo.core.delete_namespaced_pod, old["podName"], gw["metadata"]["namespace"]
        )
    except ApiException as e:
        if e.status != 404:
            raise


def resync(gw: dict[str, Any], memo: handlers.Memo) -> None:
    """Follow the current pod again, in case an event came before the status named it.

    Costs no API call while the pod watch has seen nothing the status does not show.
    """
    old = gw.get("status") or {}
    if not old.get("podName") or old.get("retryAt"):
        return
    seen = memo.pods.get((gw["metadata"]["namespace"], old["podName"]))
    if seen is not None and not handlers.news(seen, old):
        return
    try:
        raw = memo.core.read_namespaced_pod(
            old["podName"], gw["metadata"]["namespace"], _preload_content=False
        )
    except ApiException as e:
        if e.status == 404:
            return
        raise
    handlers.follow(json.loads(raw.data), memo)


def sweep(memo: handlers.Memo) -> None:
    """One pass over every unfinished workload."""
    for gw in list(memo.workloads.values()):
        phase = (gw.get("status") or {}).get("phase")
        if phase not in (*handlers.RUNNING_PHASES, None) or gw["metadata"].get("deletionTimestamp"):
            continue
        try:
            fields = check(gw, memo)
            if fields:
                handlers.patch_status(memo, gw, fields)
            else:
                resync(gw, memo)
        except Exception as e:  # noqa: BLE001 - one workload's trouble must not stop the rest
            meta = gw["metadata"]
            LOG.warning("%s/%s: %s; tried again next pass", meta["namespace"], meta["name"], e)


async def run(memo: handlers.Memo) -> None:
    """Sweep every INTERVAL_S until cancelled, in a thread with the caller's (kopf's) context."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(INTERVAL_S)
        context = contextvars.copy_context()
        await loop.run_in_executor(None, context.run, sweep, memo)
