"""A simulated device of a real node marked unhealthy (issue 16): it leaves the node's
allocatable within a few probe intervals and is never assigned while it is unhealthy."""

from __future__ import annotations

import time

from kubernetes import client

from megagpu.kube import names
from megagpu.probe import plugin_devices
from tests.e2e import real
from tests.e2e.gw import GROUP, PLURAL, VERSION
from tests.e2e.test_real_devices import REPORT, finished_pods, report, workload
from tests.e2e.test_scheduler_extender import wait_for

SICK = 0
"""The device marked unhealthy: the lowest index, the one a free node hands out first."""
RECOVER_S = 60.0
"""The probe's --recover-after (its default; realnodes does not set it): a device that failed
must read healthy this long before it is offered again."""


def test_an_unhealthy_device_leaves_allocatable_and_is_never_assigned(api, namespace, real_node):
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    node = real.record(real_node)
    marker = real.sim_dir(node) / f"gpu{SICK}{plugin_devices.UNHEALTHY_SUFFIX}"
    assert (marker.parent / f"gpu{SICK}").exists(), f"the probe keeps no device in {marker.parent}"
    assert not marker.exists(), f"{marker} is left over from an earlier run"
    wait_for(
        lambda: (
            real.allocatable_gpus(core, real_node) == node.gpus
            and real.device_health(custom, real_node).get(SICK) is True
        ),
        timeout_s=RECOVER_S + 30,
        what=f"{real_node} to offer all {node.gpus} devices before the test",
    )
    try:
        marker.touch()
        marked = time.monotonic()
        # The probe sees it at its next reading; the kubelet publishes the smaller allocatable
        # at its next node status update.
        wait_for(
            lambda: real.device_health(custom, real_node).get(SICK) is False,
            timeout_s=2 * real.PROBE_INTERVAL_S,
            what=f"the GpuNode to show device {SICK} unhealthy",
        )
        probe_s = time.monotonic() - marked
        wait_for(
            lambda: real.allocatable_gpus(core, real_node) == node.gpus - 1,
            timeout_s=2 * real.PROBE_INTERVAL_S + real.KUBELET_STATUS_S,
            what=f"allocatable {names.RESOURCE_GPU} to drop to {node.gpus - 1}",
        )
        print(
            f"\ndevice {SICK} unhealthy in the GpuNode after {probe_s:.1f} s, out of the "
            f"node's allocatable after {time.monotonic() - marked:.1f} s"
        )
        # More one-device workloads than healthy devices, at once: none may get the sick one.
        names_ = [f"one-{i}" for i in range(node.gpus + 1)]
        for name in names_:
            body = workload(name, real_node, 1, ["python", "-c", REPORT.format(seconds=3)])
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        pods = finished_pods(core, namespace, names_, timeout_s=240)
        used = set()
        for name in names_:
            pod = pods[name]
            assigned = pod.metadata.annotations[names.ANN_ASSIGNED_DEVICES]
            assert assigned != str(SICK), f"{name} was assigned the unhealthy device {SICK}"
            seen = report(pod)
            assert seen["seen"] == [f"gpu{assigned}"], (name, seen)
            used.add(assigned)
        assert used <= {str(i) for i in range(node.gpus) if i != SICK}, used
        assert real.device_health(custom, real_node).get(SICK) is False
    finally:
        marker.unlink(missing_ok=True)
        # Back to all devices for the tests after this one (the probe's hysteresis first).
        wait_for(
            lambda: (
                real.allocatable_gpus(core, real_node) == node.gpus
                and real.device_health(custom, real_node).get(SICK) is True
            ),
            timeout_s=RECOVER_S + 2 * real.PROBE_INTERVAL_S + real.KUBELET_STATUS_S + 30,
            what=f"device {SICK} to return to the node's allocatable",
        )
