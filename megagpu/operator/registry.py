"""kopf's wiring of the operator: every handler on a fresh registry (no module globals).

Handlers are thin: the work is in ``handlers`` (workloads and pods), ``outcomes`` (learning)
and ``watchdog`` (retries and timeouts); clients and settings come from the memo that
``megagpu.operator.run`` fills.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from megagpu.core import model
from megagpu.kube import names
from megagpu.operator import handlers, outcomes, watchdog


def make_registry() -> kopf.OperatorRegistry:
    """Every handler of the operator, on a fresh registry."""
    registry = kopf.OperatorRegistry()
    # The watchdog starts with the first GpuWorkload event: inside kopf's context, which
    # kopf.info and kopf.warn need to post Events.
    sweeper: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=names.GROUP, key=handlers.DIFFBASE
        )
        settings.posting.level = logging.INFO
        settings.posting.loggers = False  # our Events only, not one per handler run
        settings.watching.server_timeout = 120
        # Server-side: the API server sends only the pods megagpu made, never the cluster's
        # others (the handler's labels= filter alone would still receive and drop them).
        settings.watching.label_selectors["", "v1", "pods"] = names.LABEL_WORKLOAD
        settings.execution.max_workers = handlers.WORKERS

    @kopf.on.cleanup(registry=registry)
    async def stop_watchdog(**_: Any) -> None:
        for task in sweeper:
            task.cancel()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod, through the official client's in-cluster configuration: it reaches the API
        # server at $KUBERNETES_SERVICE_HOST (kopf's own service-account login assumes cluster
        # DNS for kubernetes.default.svc, which a cluster need not run).
        found = kopf.login_with_kubeconfig(**kwargs)
        return found or kopf.login_via_client(**kwargs)

    @kopf.on.create(*handlers.GW, registry=registry)
    def created(body: kopf.Body, patch: kopf.Patch, memo: handlers.Memo, **_: Any) -> None:
        if (body.get("status") or {}).get("attempts"):
            return
        patch.status.update({"phase": "Pending"})
        patch.status.update(handlers.start_attempt(dict(body), 1, memo))

    @kopf.on.delete(*handlers.GW, registry=registry)
    def deleted(body: kopf.Body, memo: handlers.Memo, **_: Any) -> None:
        """Kopf's finalizer holds the workload until its pods are gone (never learned)."""
        handlers.remove_pods(dict(body), memo)

    @kopf.on.event("", "v1", "pods", labels={names.LABEL_WORKLOAD: kopf.PRESENT}, registry=registry)
    def pod_event(body: kopf.Body, type: str | None, memo: handlers.Memo, **_: Any) -> None:
        handlers.remember(dict(body), type or "", memo)
        if memo.metrics is None:
            handlers.follow(dict(body), memo)
            return
        with memo.metrics.reconcile.labels("pod").time():
            handlers.follow(dict(body), memo)

    @kopf.on.event(*handlers.GW, registry=registry)
    async def workload_event(
        body: kopf.Body, type: str | None, memo: handlers.Memo, **_: Any
    ) -> None:
        handlers.remember_workload(dict(body), type or "", memo)
        if not sweeper:
            sweeper.append(asyncio.create_task(watchdog.run(memo)))

    @kopf.on.create(names.GROUP, names.VERSION, names.POLICIES, registry=registry)
    @kopf.on.update(names.GROUP, names.VERSION, names.POLICIES, field="spec", registry=registry)
    @kopf.on.resume(names.GROUP, names.VERSION, names.POLICIES, registry=registry)
    def policy_spec(spec: kopf.Spec, memo: handlers.Memo, body: kopf.Body, **_: Any) -> None:
        try:
            with memo.learning:  # saved and published in order with the learning updates
                policy = outcomes.apply_spec(memo.store, dict(spec))
                memo.publisher.publish(memo.custom, policy)
        except (model.ValidationError, ValueError, TypeError) as e:
            kopf.warn(dict(body), reason="InvalidPolicy", message=str(e))
            raise kopf.PermanentError(f"invalid GpuSchedulingPolicy spec: {e}") from e

    @kopf.on.event("", "v1", "nodes", registry=registry)
    def node_event(body: kopf.Body, type: str | None, memo: handlers.Memo, **_: Any) -> None:
        # Every Node: any node can run cpu workloads, and the fleet's benchmarks are the
        # learning's priors; this watch is the cache that completions read (no list each).
        if handlers.remember_node(dict(body), type or "", memo) == "DELETED":
            handlers.remove_gpunode(body.metadata.name or "", memo)

    @kopf.on.event(names.GROUP, names.VERSION, names.GPUNODES, registry=registry)
    def gpunode_event(name: str, type: str | None, memo: handlers.Memo, **_: Any) -> None:
        if type in (None, "ADDED"):  # listed at start or new: its Node may be gone already
            handlers.remove_gpunode_without_node(name, memo)

    return registry
