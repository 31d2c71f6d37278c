"""XID events from an NVML event set: recorded per device; hardware failures mark it unhealthy."""

from __future__ import annotations

import queue
import time
import types

from megagpu.probe import cuda, health, node
from tests.probe.test_probe import FakeNVML


class EventNVML(FakeNVML):
    """FakeNVML with an event set fed by a queue."""

    NVMLError_Timeout = type("NVMLError_Timeout", (FakeNVML.NVMLError,), {})
    nvmlEventTypeXidCriticalError = 8

    def __init__(self, supported: bool = True):
        super().__init__()
        self.events: queue.Queue = queue.Queue()
        self.registered, self.freed, self.supported = [], False, supported

    def nvmlEventSetCreate(self):
        return "set"

    def nvmlDeviceRegisterEvents(self, handle, kinds, event_set):
        if not self.supported:
            raise self.NVMLError_NotSupported("Not Supported")
        self.registered.append((handle, kinds))

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        try:
            xid = self.events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise self.NVMLError_Timeout("Timeout") from None
        return types.SimpleNamespace(device=0, eventType=8, eventData=xid)

    def nvmlEventSetFree(self, event_set):
        self.freed = True


def read_until(probe, predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        backend = probe.read()
        if predicate(backend.devices[0]):
            return backend.devices[0]
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_application_xids_are_recorded_and_hardware_xids_make_the_device_unhealthy():
    nvml = EventNVML()
    probe = cuda.Cuda(nvml)
    try:
        first = probe.read().devices[0]
        assert first.xid == 0 and first.healthy and nvml.registered == [(0, 8)]
        nvml.events.put(13)  # an application fault: recorded, the device stays usable
        assert read_until(probe, lambda d: d.xid == 13).healthy
        nvml.events.put(79)  # fallen off the bus
        failed = read_until(probe, lambda d: d.xid == 79)
        assert not failed.healthy and "XID 79" in failed.reason
        assert probe.read().devices[0].healthy  # reported once; the health gate holds it down
    finally:
        probe.xid.stop()
    assert nvml.freed


def test_the_health_gate_keeps_an_xid_failed_device_down_until_it_recovers():
    nvml, now = EventNVML(), [0.0]
    probe, gate = cuda.Cuda(nvml), health.HealthGate(30, clock=lambda: now[0])
    try:
        probe.read()
        nvml.events.put(48)
        read_until(probe, lambda d: not d.healthy)  # consumed here, outside the gate
        nvml.events.put(48)
        deadline = time.monotonic() + 5
        while gate.apply(node.read([probe])).backend("cuda").healthy:
            assert time.monotonic() < deadline
        now[0] = 10.0
        assert not gate.apply(node.read([probe])).backend("cuda").healthy
        now[0] = 45.0
        assert gate.apply(node.read([probe])).backend("cuda").healthy
    finally:
        probe.xid.stop()


def test_without_event_support_xid_is_unknown_not_zero():
    probe = cuda.Cuda(EventNVML(supported=False))
    device = probe.read().devices[0]
    assert device.xid is None and device.healthy
    assert "XID events unavailable" in probe.xid.error and not probe.xid.running
