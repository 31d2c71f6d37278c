"""The kubelet of a real node restarted while pods hold devices (issue 16): the device plugin
registers again, the running pods keep their devices, and new pods are admitted."""

from __future__ import annotations

import json
import time

from kubernetes import client

from megagpu.kube import names
from tests.e2e import real
from tests.e2e.gw import GROUP, PLURAL, VERSION
from tests.e2e.test_real_devices import REPORT, finished_pods, report, workload
from tests.e2e.test_scheduler_extender import wait_for

HOLD_S = 75
"""How long the device-holding containers run: past the kubelet's restart and the new pod."""
HOLD = (
    "import json, os, time\n"
    "first = sorted(os.listdir('/dev/megagpu-sim'))\n"
    f"time.sleep({HOLD_S})\n"
    "last = sorted(os.listdir('/dev/megagpu-sim'))\n"
    "env = os.environ.get('MEGAGPU_DEVICES', '')\n"
    "report = {'first': first, 'last': last, 'devices': env}\n"
    "open('/dev/termination-log', 'w').write(json.dumps(report))\n"
)


def running_pod(core: client.CoreV1Api, ns: str, name: str) -> client.V1Pod:
    """The pod of workload ``name`` once its container runs."""

    def found() -> client.V1Pod | None:
        pods = core.list_namespaced_pod(ns, label_selector=f"megagpu.io/workload={name}").items
        running = [
            p
            for p in pods
            if p.status.phase == "Running"
            and p.status.container_statuses
            and p.status.container_statuses[0].state.running
        ]
        return running[0] if running else None

    return wait_for(found, timeout_s=120, what=f"the pod of {name} to run")


def test_kubelet_restart_keeps_devices_and_admits_new_pods(api, namespace, real_node):
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    node = real.record(real_node)
    wait_for(
        lambda: real.allocatable_gpus(core, real_node) == node.gpus,
        timeout_s=60,
        what=f"{real_node} to offer all {node.gpus} devices before the test",
    )
    held = {"hold-1": 1, "hold-2": 2}  # 3 of the 4 devices held across the restart
    for name, gpus in held.items():
        body = workload(name, real_node, gpus, ["python", "-c", HOLD])
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    before = {name: running_pod(core, namespace, name) for name in held}
    taken = {
        d
        for p in before.values()
        for d in p.metadata.annotations[names.ANN_ASSIGNED_DEVICES].split(",")
    }
    assert len(taken) == sum(held.values()), f"two running pods share a device: {taken}"
    registered = real.registrations(node)
    assert registered >= 1, "the probe never registered its device plugin"

    started = time.monotonic()
    real.restart_kubelet(node)
    # The plugin registered with the new kubelet (a new log line: /readyz and allocatable may
    # still show the old kubelet's state for a moment), is ready, and all devices are back.
    wait_for(
        lambda: real.registrations(node) > registered,
        timeout_s=60,
        what="the device plugin to register with the restarted kubelet",
    )
    wait_for(lambda: real.probe_readyz(node) == 200, timeout_s=30, what="the probe's /readyz")
    wait_for(
        lambda: real.allocatable_gpus(core, real_node) == node.gpus,
        timeout_s=60,
        what=f"allocatable {names.RESOURCE_GPU} back to {node.gpus}",
    )
    print(f"\nkubelet restarted and plugin registered again in {time.monotonic() - started:.1f} s")

    for name, pod in before.items():  # the same containers, never restarted, still running
        now = core.read_namespaced_pod(pod.metadata.name, namespace)
        status = now.status.container_statuses[0]
        assert now.status.phase == "Running", (name, now.status.phase, now.status.reason)
        assert status.state.running is not None, (name, status.state)
        assert status.container_id == pod.status.container_statuses[0].container_id, name
        assert status.restart_count == 0, name

    # A new pod is admitted and given the one free device.
    body = workload("after", real_node, 1, ["python", "-c", REPORT.format(seconds=0)])
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    after = finished_pods(core, namespace, ["after"], timeout_s=120)["after"]
    assert after.status.reason != "UnexpectedAdmissionError", after.status.message
    assigned = after.metadata.annotations[names.ANN_ASSIGNED_DEVICES]
    assert assigned not in taken, f"the new pod got device {assigned}, held by a running pod"
    seen = report(after)
    assert seen["seen"] == [f"gpu{assigned}"], seen
    assert seen["env"]["MEGAGPU_DEVICES"] == assigned

    # The held pods end normally, having seen exactly their devices before and after.
    done = finished_pods(core, namespace, list(held), timeout_s=HOLD_S + 60)
    for name in held:
        pod = done[name]
        assert pod.metadata.uid == before[name].metadata.uid, f"{name} was replaced"
        assert pod.status.container_statuses[0].restart_count == 0, name
        devices = pod.metadata.annotations[names.ANN_ASSIGNED_DEVICES]
        state = pod.status.container_statuses[0].state.terminated
        assert pod.status.phase == "Succeeded", (name, state)
        seen = json.loads(state.message)
        expected = sorted(f"gpu{i}" for i in devices.split(","))
        assert seen == {"first": expected, "last": expected, "devices": devices}, (name, seen)

    events = core.list_namespaced_event(namespace).items
    refused = [
        (e.involved_object.name, e.message) for e in events if "Admission" in (e.reason or "")
    ]
    assert not refused, refused
