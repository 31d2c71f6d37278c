"""The extender against a cluster: watch caches feed the ledger, bind writes Bindings."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import random
import threading
from pathlib import Path
from typing import Any

from kubernetes import client

from megagpu.core import qpolicy, qstate
from megagpu.extender import ledger as ledger_mod
from megagpu.extender import metrics as metrics_mod
from megagpu.extender import placement as placement_mod
from megagpu.extender import protocol, server
from megagpu.kube import binding, convert, informers, names, qstore
from megagpu.kube import client as kube_client

LOG = logging.getLogger("megagpu.extender")
BIND_CONCURRENCY = 32
"""Binding writes in flight at once (kube-scheduler binds asynchronously, many at a time)."""


class ClusterState:
    """Informers for Nodes, GpuNodes, megagpu pods and the Q-state, feeding ledger and policy."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        ledger: ledger_mod.Ledger,
        policies: server.ReloadingPolicy,
    ) -> None:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        self.ledger, self.policies = ledger, policies
        self._lock = threading.Lock()
        self.nodes = informers.Informer("nodes", core.list_node, self._nodes_changed)
        self.gpunodes = informers.Informer(
            "gpunodes",
            functools.partial(
                custom.list_cluster_custom_object, names.GROUP, names.VERSION, names.GPUNODES
            ),
            self._nodes_changed,
        )
        self.pods = informers.Informer(
            "pods", core.list_pod_for_all_namespaces, self._pod, label_selector=names.LABEL_WORKLOAD
        )
        self.state = informers.Informer(
            "q-state",
            functools.partial(core.list_namespaced_config_map, namespace),
            self._state,
            field_selector=f"metadata.name={names.STATE_CONFIGMAP}",
        )
        self.all = (self.nodes, self.gpunodes, self.pods, self.state)

    def start(self) -> None:
        """Start every watch."""
        for informer in self.all:
            informer.start()

    def ready(self) -> bool:
        """Every cache has synced."""
        return all(i.synced.is_set() for i in self.all)

    def _nodes_changed(self, kind: str, obj: dict[str, Any]) -> None:
        with self._lock:
            gpunodes = {key: o for key, o in self.gpunodes.items.items()}
            nodes = [
                convert.node_from_k8s(n, gpunodes.get(k))
                for k, n in sorted(self.nodes.items.items())
            ]
            self.ledger.set_nodes(nodes)

    def _pod(self, kind: str, pod: dict[str, Any]) -> None:
        """Track devices of bound pods; free them when a pod ends or goes away.

        A pod not bound yet is left alone: its event may predate a bind that already took
        devices for it, and releasing then would give those devices twice.
        """
        uid = str((pod.get("metadata") or {}).get("uid"))
        phase = (pod.get("status") or {}).get("phase")
        if kind == "DELETED" or phase in ("Succeeded", "Failed"):
            self.ledger.release(uid)
            return
        held = convert.assigned_devices(pod)
        if held is not None:
            self.ledger.hold(uid, held[0], held[1])

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
) -> None:
    """Serve the extender for the cluster of ``kubeconfig`` until SIGTERM."""
    api = kube_client.api_client(kubeconfig, pool=BIND_CONCURRENCY)
    core = client.CoreV1Api(api)
    binds = concurrent.futures.ThreadPoolExecutor(BIND_CONCURRENCY, "bind")
    ledger = ledger_mod.Ledger()
    policies = server.ReloadingPolicy(policy, metrics.policy_version.set)
    metrics.policy_version.set(policy.version)
    state = ClusterState(api, namespace, ledger, policies)
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
    )
    state.start()
    await server.serve(
        placement,
        metrics,
        listen,
        state.ready,
        on_started=lambda: LOG.info("extender on %s:%s", listen.host, listen.port),
    )
