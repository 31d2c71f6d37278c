"""Extender down with ignorable: pods still land on acceptable backends; decisions resume."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from megagpu.devcluster import binaries, processes, scheduler
from tests.e2e.conftest import ROOT
from tests.e2e.podspec import megagpu_pod
from tests.e2e.test_scheduler_extender import wait_for


class Pair:
    """A kube-scheduler profile and a real `megagpu extender` it calls, on free ports."""

    def __init__(self, kubeconfig: Path, tmp: Path) -> None:
        self.kubeconfig, self.tmp = kubeconfig, tmp
        self.port, self.metrics_port = processes.free_port(), processes.free_port()
        self.name = f"megagpu-outage-{uuid.uuid4().hex[:6]}"
        self.extender: subprocess.Popen[bytes] | None = None
        conf = scheduler.write(
            tmp / "sched.yaml",
            scheduler.config(
                kubeconfig,
                scheduler.ExtenderOptions(url=f"http://127.0.0.1:{self.port}"),
                self.name,
            ),
        )
        self.log = open(tmp / "scheduler.log", "wb")
        self.scheduler = subprocess.Popen(
            scheduler.argv(binaries.binary("kube-scheduler"), conf, processes.free_port()),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def start_extender(self) -> None:
        self.extender = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "megagpu",
                "extender",
                "--kubeconfig",
                str(self.kubeconfig),
                "--namespace",
                "megagpu-system",
                "--port",
                str(self.port),
                "--metrics-port",
                str(self.metrics_port),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.ready, what="the extender's caches to sync")

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop_extender(self) -> None:
        if self.extender is not None:
            self.extender.terminate()
            self.extender.wait(timeout=10)
            self.extender = None

    def close(self) -> None:
        self.stop_extender()
        self.scheduler.terminate()
        self.scheduler.wait(timeout=10)
        self.log.close()


@pytest.fixture
def pair(kubeconfig: Path, tmp_path: Path) -> Iterator[Pair]:
    p = Pair(kubeconfig, tmp_path)
    yield p
    p.close()


def create(core: client.CoreV1Api, namespace: str, name: str, scheduler_name: str) -> None:
    core.create_namespaced_pod(
        namespace,
        megagpu_pod(
            name,
            workload_type="inference",
            model="llama3-8b-q4",
            gpus=1,
            backends=("metal", "vulkan"),
            scheduler=scheduler_name,
        ),
    )


def test_outage_falls_back_then_decisions_resume(api, namespace, pair):
    core = client.CoreV1Api(api)
    labels = {n.metadata.name: n.metadata.labels for n in client.CoreV1Api(api).list_node().items}
    create(core, namespace, "during-outage", pair.name)
    node = wait_for(
        lambda: core.read_namespaced_pod("during-outage", namespace).spec.node_name,
        timeout_s=90,
        what="placement without the extender",
    )
    assert "true" in (
        labels[node].get("megagpu.io/backend.metal"),
        labels[node].get("megagpu.io/backend.vulkan"),
    )
    annotations = core.read_namespaced_pod("during-outage", namespace).metadata.annotations
    assert "megagpu.io/decision" not in annotations  # the operator records mode fallback

    pair.start_extender()
    create(core, namespace, "after-restart", pair.name)
    wait_for(
        lambda: core.read_namespaced_pod("after-restart", namespace).spec.node_name,
        timeout_s=90,
        what="placement with the extender back",
    )
    annotations = core.read_namespaced_pod("after-restart", namespace).metadata.annotations
    assert "megagpu.io/decision" in annotations
    assert annotations["megagpu.io/assigned-backend"] in ("metal", "vulkan")
