"""Resource mode ``vendor`` (issue 16): beside the NVIDIA device plugin's ``nvidia.com/gpu``.

Fake nodes made here stand for NVIDIA nodes whose GPUs the NVIDIA device plugin advertises
(``nvidia.com/gpu``, no ``megagpu.io/gpu``) and for an AMD node that megagpu's own plugin serves
(``megagpu.io/gpu``, Vulkan only). The dev cluster's operator is swapped for one in resource mode
``vendor`` for the test and put back after it. CUDA-only workloads must ask for
``nvidia.com/gpu``, be placed on the NVIDIA nodes with the devices counted right (never more
pods on a node than it has GPUs, never one device index twice at once, the rest waiting);
workloads that also accept Vulkan ask for ``megagpu.io/gpu`` and still run, on the AMD node.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from megagpu.core import model
from megagpu.devcluster import cluster, components, processes, runtime
from megagpu.kube import convert, names, render
from tests.e2e import fake_nodes
from tests.e2e import gw as g

RUN_S = 6.0
"""Real seconds each workload runs (its simulated work is sized for this on its node)."""
TABLES = runtime.load_tables()


def vendor_nodes(suffix: str) -> list[tuple[model.Node, str]]:
    """(node, resource that advertises its GPUs): two NVIDIA nodes of 2 GPUs, one AMD of 2."""
    bench_a100 = model.Benchmarks(19.5, 312.0, 2039)
    bench_mi210 = model.Benchmarks(22.6, 181.0, 1638)
    return [
        *[
            (
                model.Node(f"vendor-a100-{suffix}-{i}", "a100", ("cuda",), 2, 81920, bench_a100),
                names.RESOURCE_NVIDIA,
            )
            for i in range(2)
        ],
        (
            model.Node(f"vendor-mi210-{suffix}", "mi210", ("vulkan",), 2, 65536, bench_mi210),
            names.RESOURCE_GPU,
        ),
    ]


@pytest.fixture
def nodes(api: client.ApiClient) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The test's fake nodes, labelled so its workloads can be pinned to them; deleted after."""
    label = f"vendor-{uuid.uuid4().hex[:6]}"
    bodies = []
    for node, resource in vendor_nodes(label):
        body = convert.fake_node(node)
        for kind in ("capacity", "allocatable"):
            body["status"][kind][resource] = body["status"][kind].pop(names.RESOURCE_GPU)
        bodies.append(body)
    with fake_nodes.made(api, label, bodies):
        yield label, bodies


@pytest.fixture
def vendor_operator(kubeconfig) -> Iterator[None]:
    """The dev cluster's operator, restarted in resource mode vendor; the original after."""
    p = cluster.paths()
    argv_file = p.pids / "operator.argv"
    original = json.loads(argv_file.read_text())
    ready = components.operator(kubeconfig).ready_url

    def swap(argv: list[str]) -> None:
        processes.stop_one("operator", p.pids)
        pid = processes.start("operator", argv, p.logs, p.pids, env={"PYTHONUNBUFFERED": "1"})
        components.wait_ready(components.Component("operator", (), (), ready), p.logs, pid)

    swap([*original, "--resource-mode", "vendor"])
    try:
        yield
    finally:
        swap(original)


def sized(body: dict[str, Any], node: dict[str, Any], backend: str) -> dict[str, Any]:
    """``body`` with simulated work that runs about RUN_S real seconds on ``node``."""
    gw = {**body, "metadata": {**body["metadata"], "namespace": "x", "uid": "u"}}
    pod = render.render_pod(gw, 1)
    pod["metadata"]["annotations"] |= {
        names.ANN_ASSIGNED_BACKEND: backend,
        names.ANN_SIM_WORK: "1",
    }
    per_unit = runtime.run_seconds(pod, node, TABLES).seconds * runtime.DEFAULT_TIME_SCALE
    template = body["spec"]["template"]
    template["metadata"]["annotations"][names.ANN_SIM_WORK] = repr(RUN_S / per_unit)
    return body


class Ledger(threading.Thread):
    """Samples the namespace's bound, unfinished pods per node until stopped."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace = client.CoreV1Api(api), namespace
        self.problems: list[str] = []
        self.most = defaultdict(int)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            held: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
            for pod in self.core.list_namespaced_pod(self.namespace).items:
                if not pod.spec.node_name or pod.status.phase in ("Succeeded", "Failed"):
                    continue
                devices = (pod.metadata.annotations or {}).get(names.ANN_ASSIGNED_DEVICES, "")
                held[pod.spec.node_name].append(
                    (pod.metadata.name, [d for d in devices.split(",") if d])
                )
            for node, pods in held.items():
                indices = [d for _, ds in pods for d in ds]
                self.most[node] = max(self.most[node], len(indices))
                if len(indices) != len(set(indices)):
                    self.problems.append(f"{node}: one device held twice at once: {pods}")


def test_vendor_mode_places_cuda_on_nvidia_gpus_counted_right_and_mixed_still_runs(
    api, namespace, nodes, vendor_operator
):
    label, made = nodes
    by_name = {n["metadata"]["name"]: n for n in made}
    nvidia = [n for n in by_name if "a100" in n]
    amd = next(n for n in by_name if "mi210" in n)
    bodies = {}
    for i in range(6):  # demand 8 GPUs of CUDA on 4 NVIDIA GPUs: some must wait
        gpus = 2 if i < 2 else 1
        body = g.manifest(f"cuda-{i}", "training", "resnet-50-bs64", gpus, ["cuda"])
        bodies[f"cuda-{i}"] = sized(body, by_name[nvidia[0]], "cuda")
    for i in range(3):  # accepts CUDA and Vulkan: asks for megagpu.io/gpu, which the AMD has
        body = g.manifest(f"mixed-{i}", "inference", "llama3-8b-q4", 1, ["cuda", "vulkan"])
        bodies[f"mixed-{i}"] = sized(body, by_name[amd], "vulkan")
    ledger = Ledger(api, namespace)
    ledger.start()
    try:
        for body in bodies.values():
            body["spec"]["template"]["spec"]["nodeSelector"] = {"megagpu.io/e2e": label}
            g.create(api, namespace, body)
        ended = {
            name: g.wait_phase(api, namespace, name, ("Succeeded", "Failed"), 240)
            for name in bodies
        }
    finally:
        ledger.stop.set()
        ledger.join()
    assert {n: w["status"]["phase"] for n, w in ended.items()} == dict.fromkeys(bodies, "Succeeded")
    assert not ledger.problems, ledger.problems
    for node in by_name:  # never more devices held at once than the node's plugin advertises
        assert ledger.most[node] <= 2, (node, ledger.most[node])
    pods = {
        p.metadata.labels[names.LABEL_WORKLOAD]: p
        for p in client.CoreV1Api(api).list_namespaced_pod(namespace).items
    }
    for name, pod in pods.items():
        limits = pod.spec.containers[0].resources.limits or {}
        annotations = pod.metadata.annotations
        if name.startswith("cuda-"):
            gpus = bodies[name]["spec"]["gpus"]
            assert limits == {names.RESOURCE_NVIDIA: str(gpus)}, limits
            assert pod.spec.node_name in nvidia
            assert annotations[names.ANN_ASSIGNED_BACKEND] == "cuda"
            assert len(annotations[names.ANN_ASSIGNED_DEVICES].split(",")) == gpus
        else:
            assert limits == {names.RESOURCE_GPU: "1"}, limits
            assert pod.spec.node_name == amd
            assert annotations[names.ANN_ASSIGNED_BACKEND] == "vulkan"
    # 8 GPUs of demand on 4: the NVIDIA nodes were full at some point, so some waited
    assert sum(ledger.most[n] for n in nvidia) == 4
