"""The extender against a cluster: watch caches feed the ledger, bind writes Bindings."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from megagpu.core import model, qpolicy, qstate, waiting
from megagpu.extender import ledger as ledger_mod
from megagpu.extender import metrics as metrics_mod
from megagpu.extender import placement as placement_mod
from megagpu.extender import protocol, server
from megagpu.extender import waits as waits_mod
from megagpu.kube import binding, convert, informers, names, qstore
from megagpu.kube import client as kube_client

LOG = logging.getLogger("megagpu.extender")
BIND_CONCURRENCY = 32
"""Binding writes in flight at once (kube-scheduler binds asynchronously, many at a time)."""


class ClusterState:
    """Informers for Nodes, GpuNodes, megagpu pods and the Q-state, feeding ledger and policy.

    A Node or GpuNode event converts that one node and hands the ledger the change (nothing
    when the converted node is unchanged, as for a GpuNode's periodic utilization update); the
    changes of a list are handed over together when the list ends.
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        ledger: ledger_mod.Ledger,
        policies: server.ReloadingPolicy,
        on_failure: Callable[[str, Exception], None] = lambda name, e: None,
        jobs: waits_mod.Jobs | None = None,
    ) -> None:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        self.ledger, self.policies = ledger, policies
        self.jobs = jobs or waits_mod.Jobs()
        """Bound megagpu pods (what waiting predicts node free times from)."""
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        """Nodes changed during a list, converted when it ends."""
        self._skipped: dict[str, str] = {}
        """Node name -> why it could not be converted (logged once per new reason)."""
        watched = {"on_failure": on_failure, "on_relisted": self._flush}
        self.nodes = informers.Informer(
            "nodes", core.list_node, self._node_event, transform=_slim, **watched
        )
        self.gpunodes = informers.Informer(
            "gpunodes",
            functools.partial(
                custom.list_cluster_custom_object, names.GROUP, names.VERSION, names.GPUNODES
            ),
            self._node_event,
            transform=_slim_gpunode,
            **watched,
        )
        self.pods = informers.Informer(
            "pods",
            core.list_pod_for_all_namespaces,
            self._pod,
            on_failure=on_failure,
            transform=_slim,
            label_selector=names.LABEL_WORKLOAD,
        )
        self.state = informers.Informer(
            "q-state",
            functools.partial(core.list_namespaced_config_map, namespace),
            self._state,
            on_failure=on_failure,
            field_selector=f"metadata.name={names.STATE_CONFIGMAP}",
        )
        self.all = (self.nodes, self.gpunodes, self.pods, self.state)

    def start(self) -> None:
        """Start every watch."""
        for informer in self.all:
            informer.start()

    def ready(self) -> bool:
        """Every cache has synced and none has failed since."""
        return all(i.healthy() for i in self.all)

    def _node_event(self, kind: str, obj: dict[str, Any]) -> None:
        """A Node or its GpuNode (same name) changed: convert that node, now or after a list."""
        name = str((obj.get("metadata") or {}).get("name"))
        with self._lock:
            self._dirty.add(name)
            if not (self.nodes.relisting or self.gpunodes.relisting):
                self._flush_locked()

    def _flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        changes = {name: self._convert(name) for name in self._dirty}
        self._dirty.clear()
        self.ledger.apply(changes)

    def _convert(self, name: str) -> model.Node | None:
        """The node as the ledger knows it; None when gone or malformed (skipped, logged)."""
        node = self.nodes.items.get(name)
        if node is None:
            self._skipped.pop(name, None)
            return None
        try:
            converted = convert.node_from_k8s(node, self.gpunodes.items.get(name))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            reason = f"{type(e).__name__}: {e}"
            if self._skipped.get(name) != reason:
                LOG.warning("node %s skipped (not schedulable until fixed): %s", name, reason)
            self._skipped[name] = reason
            return None
        if self._skipped.pop(name, None) is not None:
            LOG.info("node %s converts again", name)
        return converted

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


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without ``metadata.managedFields`` (a nested dict per written field)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def _slim_gpunode(obj: dict[str, Any]) -> dict[str, Any]:
    """A GpuNode without managedFields and without the per-backend device readings.

    The extender reads ``status.devices`` and each backend's benchmarks; the readings
    (utilization, memory, temperature, power per device) are most of the object.
    """
    backends = (obj.get("status") or {}).get("backends")
    if isinstance(backends, dict):
        for name, entry in backends.items():
            if isinstance(entry, dict):
                backends[name] = {k: v for k, v in entry.items() if k != "devices"}
    return _slim(obj)


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
        node_object=lambda name: state.nodes.items.get(name),
    )
    state.start()
    await server.serve(
        placement,
        metrics,
        listen,
        state.ready,
        on_started=lambda: LOG.info("extender on %s:%s", listen.host, listen.port),
    )
