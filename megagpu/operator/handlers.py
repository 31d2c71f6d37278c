"""kopf handlers for GpuWorkload: thin wrappers around rendering, following and learning.

Handlers are registered on a registry made by ``make_registry`` (no module globals); clients and
settings come from the memo that ``megagpu.operator.run`` fills.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from megagpu.core import model
from megagpu.kube import client as kube_client
from megagpu.kube import convert, names, qstore, render, retry
from megagpu.operator import outcomes, publish, queueing, status, templates, waits

GW = (names.GROUP, names.VERSION, names.GPUWORKLOADS)
RUNNING_PHASES = ("Pending", "Scheduling", "Running")
DIFFBASE = "last-handled-configuration"
HANDLED = f"{names.GROUP}/{DIFFBASE}"
"""kopf writes this annotation once every create handler has succeeded."""
KEPT_METADATA = ("name", "namespace", "uid", "generation", "creationTimestamp", "deletionTimestamp")
WORKERS = 16
"""Threads running handlers: most of their time is spent waiting for the API server."""
LOG = logging.getLogger("megagpu.operator")


@dataclass
class Memo:
    """What every handler needs (kopf passes it as ``memo``)."""

    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    store: qstore.Store
    namespace: str
    resource_mode: str = "megagpu"
    backoff_s: float = 2.0
    """First retry delay; doubled per attempt, at most 60 s."""
    metrics: Any = None
    """``operator.metrics.Metrics`` when served."""
    validated: templates.Validated = field(default_factory=templates.Validated)
    learning: threading.Lock = field(default_factory=threading.Lock)
    """One learning update at a time: the Q-state is one object, so concurrent ones conflict."""
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """The newest state of every megagpu pod, trimmed, as the pod watch last saw it."""
    workloads: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """Every GpuWorkload as the watch last saw it, without managedFields and annotations."""
    publisher: publish.Publisher = field(default_factory=publish.Publisher)
    nodes: dict[str, model.Node] = field(default_factory=dict)
    """Every Node as the node watch last saw it (what learning needs of the fleet)."""
    node_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    """Every Node's labels (what a pod's node selectors read, for its queue class)."""
    queue_by_size: bool = False
    """Give each pod the PriorityClass of its predicted size bucket (``kube.priorities``)."""
    queue_classes: queueing.Classes = field(default_factory=queueing.Classes)


def _gw(memo: Memo, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = memo.custom.get_namespaced_custom_object(
            *GW[:2], namespace, GW[2], name
        )
        return found
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def patch_status(memo: Memo, gw: dict[str, Any], fields: dict[str, Any]) -> None:
    """Write status fields of a GpuWorkload (a merge patch of its status subresource).

    Retried with backoff while the API server refuses for now (429, 5xx): a merge patch is
    idempotent, and the status carries the outcome that was just learned.
    """
    meta = gw["metadata"]
    retry.call(
        lambda: memo.custom.patch_namespaced_custom_object_status(
            *GW[:2], meta["namespace"], GW[2], meta["name"], {"status": fields}
        )
    )


def start_attempt(gw: dict[str, Any], attempt: int, memo: Memo) -> dict[str, Any]:
    """Create the pod of ``attempt``; returns the status fields to write."""
    meta, old = gw["metadata"], gw.get("status") or {}
    generation = meta.get("generation")
    try:
        pod = render.render_pod(gw, attempt, memo.resource_mode)
    except render.TemplateError as e:
        return _invalid(gw, str(e))
    if memo.queue_by_size:
        # copies of the node maps: the node watch changes them from another thread
        nodes, labels = dict(memo.nodes), dict(memo.node_labels)
        pod["spec"]["priorityClassName"] = memo.queue_classes.name(memo.store, nodes, labels, pod)
    shape = templates.shape(pod)
    try:
        if not memo.validated.known(shape):
            kube_client.send(memo.core.create_namespaced_pod, meta["namespace"], pod, dry_run="All")
            memo.validated.add(shape)
        kube_client.send(memo.core.create_namespaced_pod, meta["namespace"], pod)
    except ApiException as e:
        if e.status == 403 and memo.queue_by_size and "PriorityClass" in str(e.body):
            memo.queue_by_size = False  # the size classes were not made: the plain ones
            LOG.warning(
                "queue by size is off: %s (create the classes of megagpu.kube.priorities, "
                "or leave --queue-by-size out)",
                e.body,
            )
            raise kopf.TemporaryError("queue classes missing: retrying", delay=1) from e
        if e.status in (400, 422):
            return _invalid(gw, f"the API server rejected the rendered pod: {e.body or e.reason}")
        if e.status != 409:  # 409: this attempt's pod exists already (a retried handler)
            raise kopf.TemporaryError(f"pod creation failed: {e.reason}", delay=5) from e
    kopf.info(
        gw,
        reason="AttemptStarted",
        message=f"attempt {attempt}: created pod {pod['metadata']['name']}",
    )
    return {
        "phase": "Scheduling",
        "podName": pod["metadata"]["name"],
        "attempts": attempt,
        "attemptStartedAt": status.now_iso(),
        "retryAt": None,
        "observedGeneration": generation,
        "node": None,
        "backend": None,
        "device": None,
        "conditions": status.merge(
            old.get("conditions"),
            status.condition("Accepted", True, "Rendered", "the pod template is valid", generation),
            status.condition("Scheduled", False, "Waiting"),
        ),
    }


def _invalid(gw: dict[str, Any], message: str) -> dict[str, Any]:
    kopf.warn(gw, reason="InvalidTemplate", message=message)
    return {
        "phase": "Failed",
        "observedGeneration": gw["metadata"].get("generation"),
        "conditions": status.merge(
            (gw.get("status") or {}).get("conditions"),
            status.condition("Accepted", False, "InvalidTemplate", message),
            status.condition("Failed", True, "InvalidTemplate", message),
        ),
    }


def remember_node(node: dict[str, Any], event: str, memo: Memo) -> str:
    """Keep what learning needs of a Node from the node watch; returns ``event``."""
    name = str((node.get("metadata") or {}).get("name", ""))
    if event == "DELETED":
        memo.nodes.pop(name, None)
        memo.node_labels.pop(name, None)
    else:
        memo.nodes[name] = convert.node_from_k8s(node)
        memo.node_labels[name] = dict((node.get("metadata") or {}).get("labels") or {})
    return event


def _node(memo: Memo, name: str) -> model.Node | None:
    """A node from the watch's cache, else read (one get) when the watch has not seen it yet."""
    found = memo.nodes.get(name)
    if found is not None or not name:
        return found
    try:
        raw = memo.core.read_node(name, _preload_content=False)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    node = json.loads(raw.data)
    memo.node_labels.setdefault(name, dict((node.get("metadata") or {}).get("labels") or {}))
    return memo.nodes.setdefault(name, convert.node_from_k8s(node))


def remember_workload(gw: dict[str, Any], event: str, memo: Memo) -> None:
    """Keep what the watchdog and the metrics need of a GpuWorkload, dropping deleted ones.

    ``handled``: kopf has finished the create handler (its diff-base annotation is written).
    """
    meta = gw.get("metadata") or {}
    key = (meta.get("namespace", ""), meta.get("name", ""))
    if event == "DELETED":
        memo.workloads.pop(key, None)
        return
    memo.workloads[key] = {
        "apiVersion": gw.get("apiVersion"),
        "kind": gw.get("kind"),
        "metadata": {k: meta[k] for k in KEPT_METADATA if k in meta},
        "spec": gw.get("spec") or {},
        "status": gw.get("status") or {},
        "handled": HANDLED in (meta.get("annotations") or {}),
    }


def remember(pod: dict[str, Any], event: str, memo: Memo) -> None:
    """Keep what the pod watch says of a pod (what ``news`` needs), dropping deleted ones."""
    meta = pod.get("metadata") or {}
    key = (meta.get("namespace", ""), meta.get("name", ""))
    if event == "DELETED":
        memo.pods.pop(key, None)
        return
    memo.pods[key] = {
        "metadata": {"name": key[1], "annotations": meta.get("annotations") or {}},
        "spec": {"nodeName": (pod.get("spec") or {}).get("nodeName")},
        "status": pod.get("status") or {},
    }


def news(pod: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether following ``pod`` could change a GpuWorkload status like ``old`` (no API call).

    ``old`` without a podName stands for a status not read yet: only the pod is judged.
    """
    name = (pod.get("metadata") or {}).get("name")
    if old.get("podName") not in (None, name) or stopped(old, name):
        return False
    if old.get("phase") in ("Succeeded", "Failed"):
        return False
    return outcomes.terminal(pod) is not None or bool(_progress(pod, old))


def stopped(old: dict[str, Any], pod_name: str | None) -> bool:
    """Whether the status records ``pod_name`` as stopped by the operator (status.stopped)."""
    return bool(pod_name) and (old.get("stopped") or {}).get("pod") == pod_name


def follow(pod: dict[str, Any], memo: Memo) -> None:
    """Bring the owning GpuWorkload's status in line with its current pod."""
    meta = pod.get("metadata") or {}
    name = (meta.get("labels") or {}).get(names.LABEL_WORKLOAD)
    if meta.get("deletionTimestamp") and outcomes.terminal(pod) is None:
        return  # removed before it ended (a start timeout, a deleted workload): no news
    if not news(pod, {}):
        return  # created, not yet scheduled: nothing a status could show
    gw = _gw(memo, meta.get("namespace", ""), name) if name else None
    if gw is None:
        return
    old = gw.get("status") or {}
    if old.get("podName") != meta.get("name") or old.get("phase") in ("Succeeded", "Failed"):
        return
    if stopped(old, meta.get("name")):
        return  # the operator stopped it (a start timeout): its end is that, not an outcome
    if (gw.get("metadata") or {}).get("deletionTimestamp"):
        return  # its pod is removed on purpose: not an outcome to learn from
    fields = _progress(pod, old)
    if fields.get("phase") == "Scheduling":
        waits.record_wait(memo.core, gw, pod)
    if "node" in fields and not fields.get("backend"):
        fields["backend"] = _fallback_backend(memo, fields["node"], pod)
    end = outcomes.terminal(pod)
    if end is not None:
        fields.update(_finish(gw, pod, end, memo))
    if fields:
        patch_status(memo, gw, fields)


def remove_pods(gw: dict[str, Any], memo: Memo) -> None:
    """Delete every attempt's pod of a GpuWorkload that is being deleted.

    Pods are named per attempt, so this deletes by name; one past the recorded attempts covers
    an attempt whose status write was lost.
    """
    meta, attempts = gw["metadata"], int((gw.get("status") or {}).get("attempts") or 0)
    for attempt in range(1, attempts + 2):
        try:
            kube_client.send(
                memo.core.delete_namespaced_pod,
                render.pod_name(meta["name"], attempt),
                meta["namespace"],
            )
        except ApiException as e:
            if e.status != 404:
                raise


def _fallback_backend(memo: Memo, node_name: str, pod: dict[str, Any]) -> str | None:
    """The backend a pod bound without the extender uses: its first one the node offers."""
    try:
        node = _node(memo, node_name)
        workload = convert.workload_from_pod(pod)
    except (ApiException, convert.ConvertError):
        return None
    if node is None:
        return None
    offered = [
        b for b in workload.backends if b in node.backends and (b == "cpu") == (workload.gpus == 0)
    ]
    return offered[0] if offered else None


def _progress(pod: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    spec, pstatus = pod.get("spec") or {}, pod.get("status") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    conditions = old.get("conditions")
    fields: dict[str, Any] = {}
    blocked = next(
        (
            c
            for c in pstatus.get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("status") == "False"
        ),
        None,
    )
    if blocked and not spec.get("nodeName"):
        if _has_condition(conditions, "Unschedulable", blocked.get("message", "")):
            return {}
        return {
            "phase": "Scheduling",
            "conditions": status.merge(
                conditions,
                status.condition(
                    "Unschedulable",
                    True,
                    blocked.get("reason", "Unschedulable"),
                    blocked.get("message", ""),
                ),
            ),
        }
    if spec.get("nodeName") and old.get("node") != spec["nodeName"]:
        decision = outcomes.decision(pod)
        fields.update(
            {
                "node": spec["nodeName"],
                "decision": decision,
                "backend": annotations.get(names.ANN_ASSIGNED_BACKEND),
                "device": annotations.get(names.ANN_ASSIGNED_DEVICES),
            }
        )
        conditions = status.merge(
            conditions,
            status.condition(
                "Scheduled", True, decision["mode"].capitalize(), f"bound to {spec['nodeName']}"
            ),
            status.condition("Unschedulable", False, "Scheduled"),
        )
    if pstatus.get("phase") == "Running" and old.get("phase") != "Running":
        fields.update(
            {"phase": "Running", "startedAt": pstatus.get("startTime") or status.now_iso()}
        )
        conditions = status.merge(conditions, status.condition("Running", True, "Started"))
    if conditions is not old.get("conditions"):
        fields["conditions"] = conditions
    return fields


def _has_condition(conditions: list[dict[str, Any]] | None, kind: str, message: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True" and c.get("message") == message
        for c in conditions or []
    )


def _finish(
    gw: dict[str, Any], pod: dict[str, Any], end: outcomes.Terminal, memo: Memo
) -> dict[str, Any]:
    spec, old = gw.get("spec") or {}, gw.get("status") or {}
    node = _node(memo, (pod.get("spec") or {}).get("nodeName") or "")
    created = convert.parse_time(gw["metadata"].get("creationTimestamp"))
    size = outcomes.size_of(pod)
    outcome = outcomes.outcome_of(pod, end, node, spec.get("deadlineSeconds"), created, size)
    fields: dict[str, Any] = {
        "finishedAt": status.now_iso(),
        "durationSeconds": end.duration_s,
        "work": {
            "amount": size.work.amount if size.work else None,
            "unit": size.work.unit if size.work else None,
            "source": size.source,
        },
        "decision": {**(old.get("decision") or outcomes.decision(pod)), "workSource": size.source},
    }
    log_ratio = waits.prediction_error(fields["decision"], end.duration_s)
    if end.succeeded and log_ratio is not None:
        waits.report_error(gw, memo.metrics, log_ratio)
    if size.problem and end.succeeded:
        kopf.warn(gw, reason="WorkUnsized", message=size.problem)
    if not old.get("startedAt"):  # it ended before a Running state was seen
        started = (pod.get("status") or {}).get("startTime")
        if started:
            fields["startedAt"] = started
    if outcome is not None:
        decided = outcomes.decision(pod)["mode"] != "fallback"
        with memo.learning:
            learned = outcomes.learn(
                memo.store,
                outcome,
                list(memo.nodes.values()),
                decided=decided,
                on_bad_state=lambda why: kopf.warn(
                    gw, reason="QStateRejected", message=f"Q-state not loaded, using priors: {why}"
                ),
            )
            if learned.new:  # in the order learned: the newest state is published last
                memo.publisher.publish(memo.custom, learned.policy)
        fields["reward"] = round(learned.reward, 4)
        if learned.new:
            if memo.metrics is not None:
                memo.metrics.updates.inc()
                memo.metrics.reward.observe(learned.reward)
                memo.metrics.epsilon.set(learned.policy.epsilon)
                memo.metrics.reward_ema.set(learned.policy.reward_ema)
        if outcome.deadline_missed:
            kopf.warn(
                gw,
                reason="DeadlineMissed",
                message=f"finished after deadlineSeconds={spec.get('deadlineSeconds')}",
            )
    conditions = old.get("conditions")
    if end.succeeded:
        kopf.info(gw, reason="Succeeded", message=f"completed on {old.get('node')}")
        fields.update(
            {
                "phase": "Succeeded",
                "conditions": status.merge(
                    conditions,
                    status.condition("Completed", True, "Succeeded"),
                    status.condition("Running", False, "Completed"),
                ),
            }
        )
        return fields
    return {
        **fields,
        **fail_attempt(
            gw, end.reason, f"attempt {old.get('attempts', 1)} failed: {end.reason}", memo
        ),
    }


def fail_attempt(gw: dict[str, Any], reason: str, message: str, memo: Memo) -> dict[str, Any]:
    """Schedule a retry with backoff, or end Failed when attempts are used up."""
    spec, old = gw.get("spec") or {}, gw.get("status") or {}
    attempts = int(old.get("attempts", 1))
    conditions = old.get("conditions")
    if attempts < 1 + int(spec.get("maxRetries", 2)):
        delay = min(memo.backoff_s * 2 ** (attempts - 1), 60.0)
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        kopf.warn(gw, reason="Retrying", message=f"{message}; retrying in {delay:.0f}s")
        return {
            "phase": "Pending",
            "retryAt": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "conditions": status.merge(
                conditions, status.condition("Failed", False, "Retrying", message)
            ),
        }
    kopf.warn(gw, reason="Failed", message=f"{message}; no retries left")
    return {
        "phase": "Failed",
        "conditions": status.merge(
            conditions,
            status.condition("Failed", True, reason, message),
            status.condition("Running", False, reason),
        ),
    }


def remove_gpunode(name: str, memo: Memo) -> None:
    """Delete the GpuNode of a Node that is gone."""
    try:
        kube_client.send(
            memo.custom.delete_cluster_custom_object,
            names.GROUP,
            names.VERSION,
            names.GPUNODES,
            name,
        )
        LOG.info("removed GpuNode %s: its Node is gone", name)
    except ApiException as e:
        if e.status != 404:
            raise


def remove_gpunode_without_node(name: str, memo: Memo) -> None:
    """Delete a GpuNode whose Node does not exist (deleted while the operator was away)."""
    try:
        kube_client.send(memo.core.read_node, name)
    except ApiException as e:
        if e.status == 404:
            remove_gpunode(name, memo)
            return
        raise
