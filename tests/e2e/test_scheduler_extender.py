"""The real kube-scheduler calls an extender over HTTP (filter, prioritize, bind)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from megagpu.devcluster import binaries, processes, scheduler
from tests.e2e.conftest import ROOT

PREFERRED = "t4-1"


def wait_for(predicate, timeout_s: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def counts(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/counts", timeout=5) as response:
        return dict(json.load(response))


@pytest.fixture
def test_scheduler(kubeconfig: Path, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A fake extender and a kube-scheduler (same config code as megagpu-scheduler) calling it."""
    ext_port, sched_port = processes.free_port(), processes.free_port()
    name = f"megagpu-e2e-{uuid.uuid4().hex[:6]}"
    ext = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.e2e.fake_extender",
            str(ext_port),
            str(kubeconfig),
            PREFERRED,
        ],
        cwd=ROOT,
    )
    conf = scheduler.write(
        tmp_path / "sched.yaml",
        scheduler.config(
            kubeconfig, scheduler.ExtenderOptions(url=f"http://127.0.0.1:{ext_port}"), name
        ),
    )
    log = open(tmp_path / "scheduler.log", "wb")
    sched = subprocess.Popen(
        scheduler.argv(binaries.binary("kube-scheduler"), conf, sched_port),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: processes.port_in_use(ext_port), what="the test extender")
        yield name, ext_port
    finally:
        for proc in (sched, ext):
            proc.terminate()
            proc.wait(timeout=10)
        log.close()


def pod(name: str, scheduler_name: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"megagpu.io/workload": name}),
        spec=client.V1PodSpec(
            scheduler_name=scheduler_name,
            restart_policy="Never",
            containers=[client.V1Container(name="c", image="busybox")],
        ),
    )


def test_scheduler_calls_the_extender_and_binds_its_choice(api, namespace, test_scheduler):
    name, port = test_scheduler
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, pod("chosen", name))
    bound = wait_for(
        lambda: core.read_namespaced_pod("chosen", namespace).spec.node_name,
        what="the pod to be bound",
    )
    assert bound == PREFERRED
    seen = counts(port)
    assert seen.get("filter", 0) >= 1 and seen.get("prioritize", 0) >= 1
    assert seen.get("bind", 0) >= 1
    wait_for(
        lambda: core.read_namespaced_pod("chosen", namespace).status.phase == "Running",
        what="kwok to run the pod",
    )


def test_default_scheduler_places_pods_without_the_extender(api, namespace, test_scheduler):
    _, port = test_scheduler
    before = counts(port)
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, pod("plain", "default-scheduler"))
    wait_for(
        lambda: core.read_namespaced_pod("plain", namespace).spec.node_name,
        what="the default scheduler to place the pod",
    )
    assert counts(port) == before
