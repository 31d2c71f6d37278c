"""The megagpu extender with the real kube-scheduler on the dev cluster (DESIGN 9.1, 9.2)."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

from kubernetes import client

from megagpu.extender import placement
from tests.e2e.podspec import MIX, megagpu_pod
from tests.e2e.test_scheduler_extender import wait_for

METRICS = "http://127.0.0.1:8889/metrics"
PODS = 200 if os.environ.get("MEGAGPU_SCALE") == "full" else 40
BATCH = 40
"""Pods live at once: the dev cluster has room for one batch (no runtime completes them yet)."""
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def requests_by_verb() -> dict[str, float]:
    with urllib.request.urlopen(METRICS, timeout=5) as response:
        text = response.read().decode()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'^megagpu_extender_requests_total\{verb="(\w+)"\} ([0-9.e+]+)$', text, re.M
        )
    }


def place_batch(
    core: client.CoreV1Api, namespace: str, first: int, count: int, by_type: dict[str, Counter[str]]
) -> None:
    """Create ``count`` mixed pods, wait until bound, and check every placement."""
    for i in range(first, first + count):
        kind, model, gpus, backends = MIX[i % len(MIX)]
        core.create_namespaced_pod(
            namespace,
            megagpu_pod(f"w{i:03d}", workload_type=kind, model=model, gpus=gpus, backends=backends),
        )

    def all_bound():
        pods = core.list_namespaced_pod(namespace).items
        return pods if len(pods) == count and all(p.spec.node_name for p in pods) else None

    pods = wait_for(all_bound, timeout_s=120, what=f"{count} pods to be bound")
    nodes = {n.metadata.name: n.metadata.labels for n in core.list_node().items}
    held: dict[str, list[int]] = defaultdict(list)
    for pod in pods:
        ann = pod.metadata.annotations
        backend = ann["megagpu.io/assigned-backend"]
        assert backend in ann["megagpu.io/backends"].split(","), pod.metadata.name
        assert nodes[pod.spec.node_name].get(f"megagpu.io/backend.{backend}") == "true"
        decision = json.loads(ann["megagpu.io/decision"])
        assert set(decision) == placement.DECISION_KEYS
        assert decision["mode"] in ("exploit", "explore", "forced")
        devices = [int(d) for d in ann["megagpu.io/assigned-devices"].split(",") if d]
        assert len(devices) == int(ann["megagpu.io/gpus"])
        held[pod.spec.node_name] += devices
        by_type[ann["megagpu.io/workload-type"]][backend] += 1
    for node, devices in held.items():
        assert len(devices) == len(set(devices)), f"a device of {node} was given twice"
    core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, what="the batch to go")


def test_mixed_pods_land_on_acceptable_backends_with_decisions(api, namespace):
    core = client.CoreV1Api(api)
    before = requests_by_verb()
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    for first in range(0, PODS, BATCH):
        place_batch(core, namespace, first, BATCH, by_type)
    after = requests_by_verb()
    for verb in ("filter", "prioritize", "bind"):
        assert after.get(verb, 0) > before.get(verb, 0), verb
    distribution = {k: dict(v) for k, v in sorted(by_type.items())}
    print("backend distribution per workload type:", distribution)
    if PODS > BATCH:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "extender-e2e-scale.json").write_text(
            json.dumps({"pods": PODS, "backend_distribution_per_type": distribution}, indent=1)
        )


def test_pods_without_the_label_pass_through(api, namespace):
    core = client.CoreV1Api(api)
    pod = megagpu_pod("plain", workload_type="inference", model="m", gpus=0, backends=("cpu",))
    del pod["metadata"]["labels"]
    core.create_namespaced_pod(namespace, pod)
    bound = wait_for(
        lambda: core.read_namespaced_pod("plain", namespace).spec.node_name,
        what="the unlabelled pod to be bound",
    )
    annotations = core.read_namespaced_pod("plain", namespace).metadata.annotations or {}
    assert bound and "megagpu.io/decision" not in annotations
