"""The kubelet device plugin for ``megagpu.io/gpu`` (API v1beta1 over gRPC, DESIGN 9.9).

The plugin listens on its own socket in the kubelet's device-plugin directory, then registers on
``kubelet.sock`` there. That directory is ``/var/lib/kubelet/device-plugins`` whatever the
kubelet's ``--root-dir`` (a constant in the kubelet); its pod resources socket is under the root
dir. A restarting kubelet deletes every socket in that directory and makes a
new ``kubelet.sock``: the plugin watches both and serves and registers again. While the kubelet's
socket is missing or registration fails it retries with backoff and is not ready.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, Protocol

from megagpu.probe import allocation, plugin_devices

try:
    import grpc

    from megagpu.probe.kubelet import deviceplugin_pb2 as pb
    from megagpu.probe.kubelet import deviceplugin_pb2_grpc as pb_grpc
    from megagpu.probe.kubelet import podresources_pb2 as pr
    from megagpu.probe.kubelet import podresources_pb2_grpc as pr_grpc
except ImportError as e:  # pragma: no cover - the probe extra is missing
    raise ImportError(
        f"the device plugin needs grpcio and protobuf: pip install 'megagpu[probe]' ({e})"
    ) from e

LOG = logging.getLogger("megagpu.probe.deviceplugin")
API_VERSION = "v1beta1"
KUBELET_SOCKET = "kubelet.sock"
POD_RESOURCES_SOCKET = "pod-resources/kubelet.sock"
"""Relative to the kubelet's directory (``/var/lib/kubelet``)."""
HEALTHY, UNHEALTHY = "Healthy", "Unhealthy"


class PodSource(Protocol):
    """The two views of this node's pods that Allocate needs (``megagpu.probe.allocation``)."""

    def kubelet_pods(self) -> list[allocation.KubeletPod]:
        """Pods the kubelet admitted or is admitting, with their devices of the resource."""
        ...

    def node_pods(self) -> list[dict[str, Any]]:
        """The API server's pods bound to this node (JSON as the API returns it)."""
        ...


class ClusterPods:
    """The kubelet's pod resources API and the API server's pods on this node."""

    def __init__(self, kubelet_dir: str, resource: str, core: Any, node_name: str) -> None:
        self.socket = Path(kubelet_dir) / POD_RESOURCES_SOCKET
        self.resource, self.core, self.node_name = resource, core, node_name

    def kubelet_pods(self) -> list[allocation.KubeletPod]:
        """Pods from the kubelet's ``PodResourcesLister.List``."""
        try:
            with grpc.insecure_channel(f"unix://{self.socket}") as channel:
                listed = pr_grpc.PodResourcesListerStub(channel).List(
                    pr.ListPodResourcesRequest(), timeout=5
                )
        except grpc.RpcError as e:
            raise allocation.AllocationError(
                f"cannot read the kubelet's pod resources at {self.socket}: {e.details()}"
            ) from e
        return [
            allocation.KubeletPod(
                p.namespace,
                p.name,
                {
                    c.name: tuple(
                        i
                        for d in c.devices
                        if d.resource_name == self.resource
                        for i in d.device_ids
                    )
                    for c in p.containers
                },
            )
            for p in listed.pod_resources
        ]

    def node_pods(self) -> list[dict[str, Any]]:
        """Pods with ``spec.nodeName`` this node, read fresh from the API server."""
        try:
            response = self.core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={self.node_name}", _preload_content=False
            )
            return list(json.loads(response.data).get("items") or [])
        except Exception as e:  # noqa: BLE001 - any API failure refuses this Allocate only
            raise allocation.AllocationError(
                f"cannot list the pods of node {self.node_name}: {e}"
            ) from e


class Servicer(pb_grpc.DevicePluginServicer):
    """The ``DevicePlugin`` service: devices and their health, and allocation."""

    def __init__(self, plugin: DevicePlugin) -> None:
        self.plugin = plugin

    def GetDevicePluginOptions(self, request: Any, context: Any) -> Any:  # noqa: N802
        """GetPreferredAllocation is offered, PreStartContainer not needed."""
        return pb.DevicePluginOptions(get_preferred_allocation_available=True)

    def ListAndWatch(self, request: Any, context: Any) -> Any:  # noqa: N802
        """The device list now, then again at every change, while the kubelet listens."""
        seen = -1
        while context.is_active() and not self.plugin.stopping.is_set():
            version, devices = self.plugin.wait_devices(seen, timeout_s=1.0)
            if version == seen:
                continue
            seen = version
            yield pb.ListAndWatchResponse(
                devices=[
                    pb.Device(ID=d.id, health=HEALTHY if d.healthy else UNHEALTHY) for d in devices
                ]
            )

    def GetPreferredAllocation(self, request: Any, context: Any) -> Any:  # noqa: N802
        """The devices the extender assigned to the pod being admitted."""
        responses = []
        for r in request.container_requests:
            try:
                kubelet, pods = self.plugin.pods.kubelet_pods(), self.plugin.pods.node_pods()
                ids = self.plugin.allocator.preferred(r.allocation_size, kubelet, pods)
            except allocation.AllocationError as e:
                LOG.info("no preferred allocation: %s", e)
                ids = []
            ids = [i for i in ids if i in set(r.available_deviceIDs)]
            responses.append(pb.ContainerPreferredAllocationResponse(deviceIDs=ids))
        return pb.PreferredAllocationResponse(container_responses=responses)

    def Allocate(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Each container gets exactly its pod's assigned devices, or the call fails."""
        responses = []
        try:
            for r in request.container_requests:
                kubelet, pods = self.plugin.pods.kubelet_pods(), self.plugin.pods.node_pods()
                done = self.plugin.allocator.allocate(list(r.devices_ids), kubelet, pods)
                responses.append(response(done.handover))
        except allocation.AllocationError as e:
            LOG.warning("Allocate refused: %s", e)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        return pb.AllocateResponse(container_responses=responses)

    def PreStartContainer(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Not needed (GetDevicePluginOptions says so)."""
        return pb.PreStartContainerResponse()


def response(handover: plugin_devices.Handover) -> Any:
    """A ``ContainerAllocateResponse`` for a hand-over."""
    return pb.ContainerAllocateResponse(
        envs=handover.envs,
        devices=[
            pb.DeviceSpec(
                container_path=plugin_devices.container_path(p), host_path=p, permissions="rw"
            )
            for p in handover.paths
        ],
        cdi_devices=[pb.CDIDevice(name=n) for n in handover.cdi],
    )


class DevicePlugin:
    """Serves the plugin and keeps it registered with the kubelet (one background thread)."""

    def __init__(
        self,
        directory: str,
        resource: str,
        pods: PodSource,
        cdi: bool = False,
        socket_name: str = "megagpu-gpu.sock",
        poll_s: float = 1.0,
        backoff_s: tuple[float, float] = (0.5, 5.0),
    ) -> None:
        self.dir = Path(directory)
        """The kubelet's device-plugin directory (``/var/lib/kubelet/device-plugins``)."""
        self.resource, self.pods = resource, pods
        self.allocator = allocation.Allocator(resource, self.devices, cdi)
        self.socket = self.dir / socket_name
        self.poll_s = poll_s
        """Seconds between checks of the kubelet's socket and ours (a restart is seen within)."""
        self.backoff_s = backoff_s
        """First and largest wait between attempts, seconds: small, because pods that arrive
        while the kubelet has no plugin for the resource fail their admission."""
        self.stopping = threading.Event()
        self.registrations = 0
        """Successful registrations so far."""
        self._ready = threading.Event()
        self._changed = threading.Condition()
        self._devices: tuple[plugin_devices.PluginDevice, ...] = ()
        self._version = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """Registered with the kubelet that is running now."""
        return self._ready.is_set()

    def update(self, devices: Sequence[plugin_devices.PluginDevice]) -> None:
        """The node's devices now; ListAndWatch streams them when ids or health changed."""
        with self._changed:
            before = [(d.id, d.healthy) for d in self._devices]
            self._devices = tuple(devices)
            if before != [(d.id, d.healthy) for d in self._devices]:
                self._version += 1
                self._changed.notify_all()

    def devices(self) -> tuple[plugin_devices.PluginDevice, ...]:
        """The devices last given to ``update``."""
        return self._devices

    def wait_devices(
        self, seen: int, timeout_s: float
    ) -> tuple[int, tuple[plugin_devices.PluginDevice, ...]]:
        """(version, devices), waiting up to ``timeout_s`` for a version other than ``seen``."""
        with self._changed:
            if self._version == seen:
                self._changed.wait(timeout_s)
            return self._version, self._devices

    def start(self) -> None:
        """Serve and register in the background."""
        self._thread = threading.Thread(target=self._run, name="device-plugin", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (the kubelet marks the devices unhealthy)."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._stop_server()

    def _serve(self) -> None:
        self._stop_server()
        self.socket.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="dp"))
        pb_grpc.add_DevicePluginServicer_to_server(Servicer(self), server)
        server.add_insecure_port(f"unix://{self.socket}")
        server.start()
        self._server = server

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def _register(self, kubelet: Path) -> None:
        with grpc.insecure_channel(f"unix://{kubelet}") as channel:
            pb_grpc.RegistrationStub(channel).Register(
                pb.RegisterRequest(
                    version=API_VERSION,
                    endpoint=self.socket.name,
                    resource_name=self.resource,
                    options=pb.DevicePluginOptions(get_preferred_allocation_available=True),
                ),
                timeout=10,
            )

    def _run(self) -> None:
        kubelet = self.dir / KUBELET_SOCKET
        registered: tuple[int, int] | None = None
        delay, missing_logged = self.backoff_s[0], False
        while not self.stopping.is_set():
            try:
                st = os.stat(kubelet)
            except OSError:
                self._ready.clear()
                registered = None
                if not missing_logged:
                    LOG.warning(
                        "kubelet socket %s is missing: %s is not registered (is the kubelet "
                        "running, and %s mounted?); retrying with backoff up to %.1f s",
                        kubelet,
                        self.resource,
                        self.dir,
                        self.backoff_s[1],
                    )
                    missing_logged = True
                delay = self._wait(delay)
                continue
            key = (st.st_ino, st.st_mtime_ns)
            if registered == key and self.socket.exists():
                self.stopping.wait(self.poll_s)
                continue
            self._ready.clear()
            try:
                self._serve()
                self._register(kubelet)
            except (grpc.RpcError, RuntimeError, OSError) as e:
                why = f"{e.code()}: {e.details()}" if isinstance(e, grpc.RpcError) else str(e)
                LOG.warning(
                    "registering %s with the kubelet at %s failed (%s); retrying in %.1f s",
                    self.resource,
                    kubelet,
                    why,
                    delay,
                )
                delay = self._wait(delay)
                continue
            registered, delay, missing_logged = key, self.backoff_s[0], False
            self.registrations += 1
            self._ready.set()
            LOG.info(
                "registered %s with the kubelet (%s), serving on %s",
                self.resource,
                "again" if self.registrations > 1 else "first time",
                self.socket,
            )

    def _wait(self, delay: float) -> float:
        self.stopping.wait(delay)
        return min(delay * 2, self.backoff_s[1])
