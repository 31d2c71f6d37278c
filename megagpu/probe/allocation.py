"""Which pod an Allocate is for, and which devices it gets: the extender's, never a guess.

The kubelet's Allocate names only device ids and their count. The pod is found from two views:
the kubelet's pod resources (every pod it admitted or is admitting, with the devices it gave each
container) and the API server's pods on this node (their annotations and requests). The kubelet
admits one pod at a time, so the pod being admitted is the one that the kubelet knows and whose
container asking for the resource holds no device yet. Its devices are those of its
``megagpu.io/assigned-devices`` (written by the extender's Binding, atomically with the node);
the kubelet's own device ids count only by number (HAMi does the same).

A device is consumed while a live pod (on this node, not finished) that the kubelet gave the
resource holds it by its annotation, or since this plugin allocated it: derived afresh at every
Allocate, so a restarted probe forgets nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from megagpu.kube import names
from megagpu.probe import plugin_devices

LOG = logging.getLogger("megagpu.probe.deviceplugin")


class AllocationError(Exception):
    """Allocate must fail; the message says which pod and why (the kubelet shows it)."""


@dataclass(frozen=True)
class KubeletPod:
    """A pod as the kubelet's pod resources API lists it."""

    namespace: str
    name: str
    devices: dict[str, tuple[str, ...]]
    """Container name -> this resource's device ids the kubelet gave it (regular containers
    and sidecars; plain init containers are not listed)."""


@dataclass(frozen=True)
class Allocation:
    """The pod an Allocate is for and what its container gets."""

    pod: str
    """``namespace/name``."""
    devices: tuple[plugin_devices.PluginDevice, ...]
    handover: plugin_devices.Handover


def _meta(pod: dict[str, Any]) -> dict[str, Any]:
    return pod.get("metadata") or {}


def _key(pod: dict[str, Any]) -> str:
    return f"{_meta(pod).get('namespace')}/{_meta(pod).get('name')}"


def _live(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _requests(pod: dict[str, Any], resource: str) -> dict[str, tuple[int, bool]]:
    """Container name -> (count asked for, listed by pod resources) for ``resource``."""
    spec = pod.get("spec") or {}
    out = {}
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or []:
            limits = (c.get("resources") or {}).get("limits") or {}
            try:
                count = int(limits.get(resource, 0))
            except (TypeError, ValueError):
                count = 0
            if count > 0:
                listed = kind == "containers" or c.get("restartPolicy") == "Always"
                out[str(c.get("name"))] = (count, listed)
    return out


class Allocator:
    """Answers Allocate and GetPreferredAllocation for one resource on one node."""

    def __init__(
        self,
        resource: str,
        devices: Callable[[], Sequence[plugin_devices.PluginDevice]],
        cdi: bool = False,
        exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.resource = resource
        self.devices = devices
        """The node's devices now (from the latest probe reading)."""
        self.cdi = cdi
        self._exists = exists
        self._lock = threading.Lock()
        self._allocated: dict[str, str] = {}
        """Device id -> UID of the pod this plugin gave it (until that pod is no longer live)."""

    def admitting(
        self, count: int, kubelet: Sequence[KubeletPod], pods: Sequence[dict[str, Any]]
    ) -> dict[str, Any]:
        """The pod the kubelet is admitting with a container that asks for ``count`` devices."""
        known = {(p.namespace, p.name): p for p in kubelet}
        candidates, asking = [], []
        for pod in pods:
            meta = _meta(pod)
            seen = known.get((meta.get("namespace"), meta.get("name")))
            wanted = _requests(pod, self.resource)
            if seen is None or not _live(pod) or not wanted:
                continue
            listed = [c for c, (_, shown) in wanted.items() if shown]
            pending = any(not seen.devices.get(c) for c in listed) or (
                not listed and str(meta.get("uid")) not in self._allocated.values()
            )
            if pending:
                asking.append(_key(pod))
                if any(n == count for n, _ in wanted.values()):
                    candidates.append(pod)
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise AllocationError(
                f"pods {', '.join(_key(p) for p in candidates)} are all being admitted with "
                f"{count} {self.resource}: refusing to guess which one this Allocate is for"
            )
        raise AllocationError(
            f"no pod on this node that the kubelet is admitting has a container asking for "
            f"{count} {self.resource}" + (f" (admitting: {', '.join(asking)})" if asking else "")
        )

    def assignment(self, pod: dict[str, Any]) -> tuple[str, str, list[plugin_devices.PluginDevice]]:
        """(backend, devices text, devices) the extender assigned to ``pod``, checked."""
        key = _key(pod)
        annotations = _meta(pod).get("annotations") or {}
        text = annotations.get(names.ANN_ASSIGNED_DEVICES)
        backend = annotations.get(names.ANN_ASSIGNED_BACKEND)
        if text is None or not backend:
            raise AllocationError(
                f"pod {key} has no {names.ANN_ASSIGNED_DEVICES} and {names.ANN_ASSIGNED_BACKEND}"
                " annotations: it was bound without megagpu's scheduler extender (was it down?),"
                " so no devices were chosen for it"
            )
        try:
            indices = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise AllocationError(
                f"pod {key}: {names.ANN_ASSIGNED_DEVICES}={text!r} is not a comma list of "
                "device indices"
            ) from None
        ids = [x.strip() for x in annotations.get(names.ANN_ASSIGNED_DEVICE_IDS, "").split(",")]
        if len(set(indices)) != len(indices) or not indices:
            raise AllocationError(
                f"pod {key}: {names.ANN_ASSIGNED_DEVICES}={text!r} names no device or one twice"
            )
        by_index = {d.index: d for d in self.devices()}
        chosen = []
        for position, index in enumerate(indices):
            device = by_index.get(index)
            if device is None:
                raise AllocationError(
                    f"pod {key} was assigned device {index}, which this node does not have "
                    f"(devices: {', '.join(str(i) for i in sorted(by_index)) or 'none'})"
                )
            if ids != [""] and (position >= len(ids) or ids[position] != device.id):
                raise AllocationError(
                    f"pod {key}: device {index} is {device.id} on this node but the pod's "
                    f"{names.ANN_ASSIGNED_DEVICE_IDS} says {','.join(ids)!r}: the node's "
                    "devices changed after the pod was bound"
                )
            if not device.healthy:
                raise AllocationError(f"pod {key} was assigned device {device.id}: unhealthy now")
            chosen.append(device)
        return backend, text, chosen

    def _consumed(
        self, kubelet: Sequence[KubeletPod], pods: Sequence[dict[str, Any]]
    ) -> dict[str, tuple[str, str]]:
        """Device id -> (uid, pod) for every device a live pod holds."""
        live = {str(_meta(p).get("uid")): p for p in pods if _live(p)}
        for device_id in [d for d, uid in self._allocated.items() if uid not in live]:
            del self._allocated[device_id]
        given = {(p.namespace, p.name) for p in kubelet if any(p.devices.values())}
        by_index = {d.index: d.id for d in self.devices()}
        held = {d: (uid, _key(live[uid])) for d, uid in self._allocated.items()}
        for uid, pod in live.items():
            meta = _meta(pod)
            if (meta.get("namespace"), meta.get("name")) not in given:
                continue
            text = (meta.get("annotations") or {}).get(names.ANN_ASSIGNED_DEVICES, "")
            for item in text.split(","):
                if item.strip().isdigit() and int(item) in by_index:
                    held.setdefault(by_index[int(item)], (uid, _key(pod)))
        return held

    def allocate(
        self,
        requested: Sequence[str],
        kubelet: Sequence[KubeletPod],
        pods: Sequence[dict[str, Any]],
    ) -> Allocation:
        """The devices of the pod being admitted, for its container asking for ``requested``."""
        known = {d.id for d in self.devices()}
        unknown = [d for d in requested if d not in known]
        if unknown:
            raise AllocationError(f"unknown device id(s) {', '.join(unknown)} for {self.resource}")
        with self._lock:
            pod = self.admitting(len(requested), kubelet, pods)
            backend, text, devices = self.assignment(pod)
            key, uid = _key(pod), str(_meta(pod).get("uid"))
            if len(devices) != len(requested):
                raise AllocationError(
                    f"pod {key} was assigned {len(devices)} device(s) ({text}) but its container "
                    f"asks for {len(requested)} {self.resource}"
                )
            held = self._consumed(kubelet, pods)
            for device in devices:
                owner = held.get(device.id)
                if owner is not None and owner[0] != uid:
                    raise AllocationError(
                        f"pod {key} was assigned device {device.index} ({device.id}), which pod "
                        f"{owner[1]} holds: refusing to share it"
                    )
            for device in devices:
                self._allocated[device.id] = uid
        if sorted(requested) != sorted(d.id for d in devices):
            LOG.info(
                "pod %s: the kubelet chose %s, the extender assigned %s; handing over the latter",
                key,
                ",".join(requested),
                ",".join(d.id for d in devices),
            )
        extra = {} if self._exists is None else {"exists": self._exists}
        handover = plugin_devices.handover(backend, text, devices, self.cdi, **extra)
        LOG.info("allocated %s to pod %s (%s)", ",".join(d.id for d in devices), key, backend)
        return Allocation(key, tuple(devices), handover)

    def preferred(
        self, size: int, kubelet: Sequence[KubeletPod], pods: Sequence[dict[str, Any]]
    ) -> list[str]:
        """The ids of the devices assigned to the pod being admitted ([] when unclear)."""
        try:
            with self._lock:
                _, _, devices = self.assignment(self.admitting(size, kubelet, pods))
        except AllocationError as e:
            LOG.info("no preferred allocation: %s", e)
            return []
        return [d.id for d in devices]
