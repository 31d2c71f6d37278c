"""The device plugin over real gRPC against a fake kubelet on unix sockets in a temporary dir."""

import logging
import queue
import shutil
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from megagpu.probe import allocation, deviceplugin, plugin_devices
from megagpu.probe.kubelet import deviceplugin_pb2 as pb
from megagpu.probe.kubelet import deviceplugin_pb2_grpc as pb_grpc
from tests.probe.test_allocation import SIM, kubelet, pod


class FakeKubelet(pb_grpc.RegistrationServicer):
    """The kubelet's Registration service: records every Register."""

    def __init__(self, directory: Path) -> None:
        self.requests: queue.Queue = queue.Queue()
        self.server = grpc.server(futures.ThreadPoolExecutor(2))
        pb_grpc.add_RegistrationServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"unix://{directory / 'kubelet.sock'}")
        self.server.start()

    def Register(self, request, context):  # noqa: N802
        self.requests.put(request)
        return pb.Empty()

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


class FakePods:
    def __init__(self) -> None:
        self.kubelet: list[allocation.KubeletPod] = []
        self.pods: list[dict] = []

    def kubelet_pods(self):
        return list(self.kubelet)

    def node_pods(self):
        return list(self.pods)


@pytest.fixture
def directory():
    path = Path(tempfile.mkdtemp(prefix="dp", dir="/tmp"))  # unix socket paths are short
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def plugin(directory):
    p = deviceplugin.DevicePlugin(
        str(directory), "megagpu.io/gpu", FakePods(), poll_s=0.05, backoff_s=(0.05, 0.2)
    )
    p.update(SIM)
    yield p
    p.stop()


def _until(check, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def _stub(plugin):
    channel = grpc.insecure_channel(f"unix://{plugin.socket}")
    return channel, pb_grpc.DevicePluginStub(channel)


def test_missing_kubelet_socket_is_retried_and_logged_then_registration_follows(
    directory, plugin, caplog
):
    caplog.set_level(logging.WARNING, "megagpu.probe.deviceplugin")
    plugin.start()
    time.sleep(0.3)
    assert not plugin.ready
    assert "kubelet socket" in caplog.text and "is missing" in caplog.text
    kubelet_ = FakeKubelet(directory)
    try:
        request = kubelet_.requests.get(timeout=10)
        assert (request.version, request.endpoint, request.resource_name) == (
            "v1beta1",
            "megagpu-gpu.sock",
            "megagpu.io/gpu",
        )
        assert request.options.get_preferred_allocation_available
        _until(lambda: plugin.ready)
    finally:
        kubelet_.stop()


def test_the_kubelet_dials_back_lists_devices_and_sees_health_change(directory, plugin):
    kubelet_ = FakeKubelet(directory)
    plugin.start()
    kubelet_.requests.get(timeout=10)
    channel, stub = _stub(plugin)
    try:
        assert stub.GetDevicePluginOptions(pb.Empty()).get_preferred_allocation_available
        stream = stub.ListAndWatch(pb.Empty())
        first = next(stream)
        assert [(d.ID, d.health) for d in first.devices] == [
            (f"sim-{i}", "Healthy") for i in range(4)
        ]
        sick = plugin_devices.PluginDevice(3, "sim-3", "cuda", "sim-3", False, (), True)
        plugin.update([*SIM[:3], sick])
        second = next(stream)
        assert [d.health for d in second.devices] == ["Healthy"] * 3 + ["Unhealthy"]
        stream.cancel()
    finally:
        channel.close()
        kubelet_.stop()


def test_allocate_and_preferred_allocation_over_grpc(directory, plugin):
    kubelet_ = FakeKubelet(directory)
    plugin.start()
    kubelet_.requests.get(timeout=10)
    plugin.pods.pods = [pod("a", "2,3", gpus=2), pod("bare", devices=None, backend=None)]
    plugin.pods.kubelet = [kubelet("a")]
    channel, stub = _stub(plugin)
    try:
        preferred = stub.GetPreferredAllocation(
            pb.PreferredAllocationRequest(
                container_requests=[
                    pb.ContainerPreferredAllocationRequest(
                        available_deviceIDs=[f"sim-{i}" for i in range(4)], allocation_size=2
                    )
                ]
            )
        )
        assert list(preferred.container_responses[0].deviceIDs) == ["sim-2", "sim-3"]
        answer = stub.Allocate(
            pb.AllocateRequest(
                container_requests=[pb.ContainerAllocateRequest(devices_ids=["sim-0", "sim-1"])]
            )
        )
        (container,) = answer.container_responses
        assert dict(container.envs) == {"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": "2,3"}
        assert [(d.host_path, d.container_path, d.permissions) for d in container.devices] == [
            ("/dev/megagpu-sim/gpu2", "/dev/megagpu-sim/gpu2", "rw"),
            ("/dev/megagpu-sim/gpu3", "/dev/megagpu-sim/gpu3", "rw"),
        ]
        plugin.pods.kubelet = [kubelet("a", ["sim-0", "sim-1"]), kubelet("bare")]
        with pytest.raises(grpc.RpcError) as refused:
            stub.Allocate(
                pb.AllocateRequest(
                    container_requests=[pb.ContainerAllocateRequest(devices_ids=["sim-0"])]
                )
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "ns/bare has no megagpu.io/assigned-devices" in refused.value.details()
    finally:
        channel.close()
        kubelet_.stop()


def test_a_restarted_kubelet_gets_a_new_registration(directory, plugin):
    first = FakeKubelet(directory)
    plugin.start()
    first.requests.get(timeout=10)
    _until(lambda: plugin.ready)
    # the kubelet restarts: it stops, deletes every socket in the directory, listens anew
    first.stop()
    for sock in directory.glob("*.sock"):
        sock.unlink()
    second = FakeKubelet(directory)
    try:
        again = second.requests.get(timeout=10)
        assert again.resource_name == "megagpu.io/gpu"
        _until(lambda: plugin.ready and plugin.registrations == 2)
        channel, stub = _stub(plugin)  # serving again on a fresh socket
        with channel:
            assert stub.GetDevicePluginOptions(pb.Empty(), timeout=5)
    finally:
        second.stop()


def test_readyz_says_why_the_probe_is_not_ready():
    from prometheus_client import CollectorRegistry

    from megagpu.probe import endpoints

    problem = ["device plugin not registered with the kubelet"]
    app = endpoints.app(CollectorRegistry(), lambda: problem[0])
    statuses = []

    def get(path):
        body = b"".join(
            app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, lambda s, h: statuses.append(s))
        )
        return statuses[-1], body.decode()

    assert get("/readyz") == ("503 Service Unavailable", problem[0] + "\n")
    assert get("/healthz") == ("200 OK", "ok\n")
    problem[0] = ""
    assert get("/readyz") == ("200 OK", "ok\n")
