"""The live cluster as a dashboard source: list+watch caches, never a list per frame.

Works with read-only RBAC: it only lists and watches. A forbidden or missing resource leaves
the other panels working and tells the affected panel what is missing.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from megagpu.kube import client as kube_client
from megagpu.kube import informers, names
from megagpu.tui.source import Health, Objects

CRD_HINT = "install the CRDs: kubectl apply --server-side -f crds/ (or helm install the chart)"


class ClusterSource:
    """GpuWorkloads, GpuNodes, Nodes, the policy and GpuWorkload Events of one cluster."""

    def __init__(self, api: client.ApiClient, *, title: str, namespace: str = "all") -> None:
        self.title, self.namespace = title, namespace
        self.host = api.configuration.host
        custom = client.CustomObjectsApi(api)
        self._changes = itertools.count(1)
        self._version = 0
        self._started = False
        group = (names.GROUP, names.VERSION)
        if namespace == "all":
            workloads = functools.partial(custom.list_cluster_custom_object, *group)
            events = core_list(api, "/api/v1/events")
        else:
            workloads = functools.partial(custom.list_namespaced_custom_object, *group, namespace)
            events = core_list(api, f"/api/v1/namespaces/{namespace}/events")
        self._informers = {
            "workloads": informers.Informer(
                names.GPUWORKLOADS, workloads, self._changed, plural=names.GPUWORKLOADS
            ),
            "gpus": informers.Informer(
                names.GPUNODES,
                functools.partial(custom.list_cluster_custom_object, *group, names.GPUNODES),
                self._changed,
            ),
            "nodes": informers.Informer("nodes", core_list(api, "/api/v1/nodes"), self._changed),
            "policy": informers.Informer(
                names.POLICIES,
                functools.partial(custom.list_cluster_custom_object, *group, names.POLICIES),
                self._changed,
                field_selector=f"metadata.name={names.POLICY_NAME}",
            ),
            "events": informers.Informer(
                "events", events, self._changed, field_selector="involvedObject.kind=GpuWorkload"
            ),
        }

    @classmethod
    def connect(cls, kubeconfig: Path | None, namespace: str = "all") -> ClusterSource:
        """A source for the cluster of ``kubeconfig`` (raises ``ClusterUnreachable``)."""
        api = kube_client.api_client(kubeconfig)
        return cls(api, title=kube_client.context_name(kubeconfig), namespace=namespace)

    def _changed(self, kind: str, obj: dict[str, Any]) -> None:
        self._version = next(self._changes)

    def start(self) -> None:
        """Start every watch in the background (once; later calls do nothing)."""
        if self._started:
            return
        self._started = True
        for informer in self._informers.values():
            informer.start()

    def stop(self) -> None:
        """Stop every watch."""
        for informer in self._informers.values():
            informer.stop()

    def version(self) -> int:
        """Changes on every watch event."""
        return self._version

    def objects(self) -> Objects:
        """The cached objects (copies of the lists; the dicts are never mutated in place)."""
        items = {panel: list(inf.items.values()) for panel, inf in self._informers.items()}
        return Objects(
            time.time(),
            items["workloads"],
            items["gpus"],
            items["nodes"],
            items["policy"][0] if items["policy"] else None,
            items["events"],
        )

    def health(self) -> Health:
        """Unreachable when a watch cannot connect; each panel's permission or CRD problem."""
        problems: dict[str, str] = {}
        unreachable = False
        for panel, informer in self._informers.items():
            error = informer.error
            if isinstance(error, ApiException):
                problems[panel] = _explain(error, informer.name)
            elif error is not None:
                unreachable = True
        if unreachable:
            return Health(f"unreachable: {self.host} (retrying)", problems)
        if not all(i.synced.is_set() or i.error for i in self._informers.values()):
            return Health("connecting", problems)
        return Health("connected", problems)


def core_list(api: client.ApiClient, path: str) -> Callable[..., Any]:
    """A list-and-watch function for a core/v1 path, through the official dynamic client.

    Not the typed CoreV1Api: importing it takes 0.45 s (413 validated methods), a third of the
    first frame's budget. Core paths are fixed, so the dynamic client needs no discovery.
    """
    core = dynamic.DynamicClient(api, discoverer=lambda *_: None)
    return functools.partial(core.request, "get", path, serialize=False)


def _explain(error: ApiException, resource: str) -> str:
    if error.status == 403:
        return (
            f"forbidden: this account may not list and watch {resource}; "
            "grant get/list/watch on it (the chart's megagpu-viewer ClusterRole)"
        )
    if error.status == 404 and resource != "nodes" and resource != "events":
        return f"{resource}.{names.GROUP} is not installed: {CRD_HINT}"
    return f"the API server answered {error.status} {error.reason} for {resource}; retrying"
