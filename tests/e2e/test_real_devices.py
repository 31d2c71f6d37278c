"""Devices the extender chose reach the container on a real node (device plugin, `megagpu exec`)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest
from kubernetes import client

from megagpu.devcluster import nodeconfig
from tests.e2e.gw import GROUP, PLURAL, VERSION

REPORT = (
    "import json, os, time\n"
    "start = time.time()\n"
    "seen = sorted(os.listdir('/dev/megagpu-sim')) if os.path.isdir('/dev/megagpu-sim') else []\n"
    "time.sleep({seconds})\n"
    "keys = ('MEGAGPU_', 'CUDA_', 'NVIDIA_', 'GGML_VK_')\n"
    "env = {{k: v for k, v in os.environ.items() if k.startswith(keys)}}\n"
    "report = {{'seen': seen, 'env': env, 'start': start, 'end': time.time()}}\n"
    "open('/dev/termination-log', 'w').write(json.dumps(report))\n"
)


def workload(name: str, node: str, gpus: int, command: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GpuWorkload",
        "metadata": {"name": name},
        "spec": {
            "workloadType": "inference",
            "model": "device-check",
            "gpus": gpus,
            "memoryMiB": 1024,
            "backends": ["cuda"],
            "template": {
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "tolerations": [{"key": nodeconfig.TAINT, "operator": "Exists"}],
                    "containers": [
                        {
                            "name": "w",
                            "image": "localhost/megagpu:dev",
                            "imagePullPolicy": "Never",
                            "command": command,
                        }
                    ],
                }
            },
        },
    }


def finished_pods(core: client.CoreV1Api, ns: str, names: list[str], timeout_s: float) -> dict:
    """Each workload's pod once it has ended (Succeeded or Failed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pods = core.list_namespaced_pod(ns).items
        done = {
            p.metadata.labels["megagpu.io/workload"]: p
            for p in pods
            if p.status.phase in ("Succeeded", "Failed")
        }
        if all(n in done for n in names):
            return done
        phases = {p.metadata.name: p.status.phase for p in pods}
        assert time.monotonic() < deadline, f"not all ended: {phases}"
        time.sleep(1)


def report(pod: client.V1Pod) -> dict[str, Any]:
    state = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Succeeded", (pod.metadata.name, state)
    return json.loads(state.message)


def test_each_container_sees_exactly_the_devices_of_its_assignment(api, namespace, real_node):
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    sizes = [1, 2, 1, 2, 1, 1, 2, 1]  # 11 devices asked of 4: some must wait, none may share
    names = [f"dev-{i}" for i in range(len(sizes))]
    for name, gpus in zip(names, sizes, strict=True):
        command = ["python", "-c", REPORT.format(seconds=15)]
        body = workload(name, real_node, gpus, command)
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    pods = finished_pods(core, namespace, names, timeout_s=300)
    runs = []
    for name, gpus in zip(names, sizes, strict=True):
        pod = pods[name]
        annotations = pod.metadata.annotations
        assert pod.spec.node_name == real_node
        assigned = annotations["megagpu.io/assigned-devices"].split(",")
        assert len(assigned) == gpus
        seen = report(pod)
        assert seen["seen"] == sorted(f"gpu{i}" for i in assigned), (name, seen)
        assert seen["env"]["MEGAGPU_DEVICES"] == annotations["megagpu.io/assigned-devices"]
        assert seen["env"]["MEGAGPU_BACKEND"] == annotations["megagpu.io/assigned-backend"]
        runs.append((seen["start"], seen["end"], set(assigned), name))
    for (s1, e1, d1, n1), (s2, e2, d2, n2) in itertools.combinations(runs, 2):
        if s1 < e2 and s2 < e1:
            assert not d1 & d2, f"{n1} and {n2} ran at once on {d1 & d2}"


@pytest.mark.parametrize("gpus", [1, 2])
def test_megagpu_exec_sets_the_runtime_variables_of_the_assignment(api, namespace, real_node, gpus):
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    name = f"exec-{gpus}"
    command = ["megagpu", "exec", "--", "python", "-c", REPORT.format(seconds=0)]
    body = workload(name, real_node, gpus, command)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    pod = finished_pods(core, namespace, [name], timeout_s=180)[name]
    env = report(pod)["env"]
    assigned = pod.metadata.annotations["megagpu.io/assigned-devices"]
    assert env["MEGAGPU_DEVICES"] == assigned
    assert env["MEGAGPU_BACKEND"] == "cuda"
    assert env["CUDA_VISIBLE_DEVICES"] == assigned
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
