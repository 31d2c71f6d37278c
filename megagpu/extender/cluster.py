"""The extender against a cluster: watch caches feed the ledger, bind writes Bindings."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from megagpu.core import qpolicy, qstate, waiting
from megagpu.extender import fleetwatch, protocol, server
from megagpu.extender import ledger as ledger_mod
from megagpu.extender import metrics as metrics_mod
from megagpu.extender import placement as placement_mod
from megagpu.extender import waits as waits_mod
from megagpu.kube import binding, convert, informers, names, qstore
from megagpu.kube import client as kube_client

LOG = logging.getLogger("megagpu.extender")
BIND_CONCURRENCY = 32
"""Binding writes in flight at once (kube-scheduler binds asynchronously, many at a time)."""


class ClusterState:
    """The fleet's watch process, and informers for megagpu pods and the Q-state.

    Nodes and GpuNodes are watched in a process of their own (``fleetwatch``: their events
    are many and almost all change nothing the extender reads); pods and the Q-state change
    when workloads do, and are watched here.
    """

    def __init__(
        self,
        api: client.ApiClient,
        kubeconfig: Path | None,
        namespace: str,
        ledger: ledger_mod.Ledger,
        policies: server.ReloadingPolicy,
        on_failure: Callable[[str, Exception], None] = lambda name, e: None,
        jobs: waits_mod.Jobs | None = None,
    ) -> None:
        core = client.CoreV1Api(api)
        self.ledger, self.policies = ledger, policies
        self.jobs = jobs or waits_mod.Jobs()
        """Bound megagpu pods (what waiting predicts node free times from)."""
        self.fleet = fleetwatch.FleetWatch(kubeconfig, ledger, on_failure)
        self.pods = informers.Informer(
            "pods",
            core.list_pod_for_all_namespaces,
            self._pod,
            on_failure=on_failure,
            transform=fleetwatch.slim,
            label_selector=names.LABEL_WORKLOAD,
        )
        self.state = informers.Informer(
            "q-state",
            functools.partial(core.list_namespaced_config_map, namespace),
            self._state,
            on_failure=on_failure,
            field_selector=f"metadata.name={names.STATE_CONFIGMAP}",
        )
        self.all = (self.fleet, self.pods, self.state)

    def start(self) -> None:
        """Start every watch."""
        for watched in self.all:
            watched.start()

    def ready(self) -> bool:
        """Every cache has synced and none has failed since."""
        return all(w.healthy() for w in self.all)

    def _pod(self, kind: str, pod: dict[str, Any]) -> None:
        """Track devices and jobs of bound pods; free them when a pod ends or goes away.

        A pod not bound yet is left alone: its event may predate a bind that already took
        devices for it, and releasing then would give those devices twice.
        """
        uid = str((pod.get("metadata") or {}).get("uid"))
        phase = (pod.get("status") or {}).get("phase")
        if kind == "DELETED" or phase in ("Succeeded", "Failed"):
            self.ledger.release(uid)
            self.jobs.remove(uid)
            return
        held = convert.assigned_devices(pod)
        if held is not None:
            self.ledger.hold(uid, held[0], held[1])
            job = waits_mod.job_from_pod(pod, time.time())
            if job is not None and (not self.jobs.known(uid) or phase == "Running"):
                self.jobs.add(uid, job)

    def _state(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        try:
            self.policies.load(qstore.policy_from_configmap(obj))
        except qstate.StateError as e:
            LOG.warning(
                "Q-state ConfigMap not loaded (keeping version %s): %s",
                self.policies.current().version,
                e,
            )

    def pod_by_uid(self, uid: str) -> dict[str, Any] | None:
        """A megagpu pod from the cache by UID."""
        return next(
            (
                p
                for p in list(self.pods.items.values())
                if (p.get("metadata") or {}).get("uid") == uid
            ),
            None,
        )


async def run(
    kubeconfig: Path | None,
    namespace: str,
    listen: server.Listen,
    metrics: metrics_mod.Metrics,
    policy: qpolicy.QPolicy,
    seed: int,
    settings: waiting.Settings | None = None,
) -> None:
    """Serve the extender for the cluster of ``kubeconfig`` until SIGTERM.

    ``settings``: when waiting pays, and the longest wait.
    """
    api = kube_client.api_client(kubeconfig, pool=BIND_CONCURRENCY)
    core = client.CoreV1Api(api)
    binds = concurrent.futures.ThreadPoolExecutor(BIND_CONCURRENCY, "bind")
    ledger = ledger_mod.Ledger()
    policies = server.ReloadingPolicy(policy, metrics.policy_version.set)
    metrics.policy_version.set(policy.version)
    waits = waits_mod.Waits(settings=settings)
    state = ClusterState(
        api,
        kubeconfig,
        namespace,
        ledger,
        policies,
        on_failure=lambda name, e: metrics.informer_failures.labels(name).inc(),
        jobs=waits.jobs,
    )
    loop = asyncio.get_running_loop()

    async def bind(args: protocol.BindingArgs, annotations: dict[str, str]) -> None:
        call = functools.partial(
            binding.bind,
            core,
            args.pod_namespace,
            args.pod_name,
            args.pod_uid,
            args.node,
            annotations,
        )
        try:
            await loop.run_in_executor(binds, call)
        except binding.AlreadyBound as e:
            raise placement_mod.BindConflict(e.node) from e

    placement = placement_mod.Placement(
        ledger,
        policies,
        bind,
        random.Random(seed),
        pod_lookup=state.pod_by_uid,
        on_decision=lambda mode, backend: metrics.decisions.labels(mode, backend).inc(),
        ready=state.ready,
        waits=waits,
        node_object=state.fleet.objects.get,
    )
    state.start()
    await server.serve(
        placement,
        metrics,
        listen,
        state.ready,
        on_started=lambda: LOG.info("extender on %s:%s", listen.host, listen.port),
    )
