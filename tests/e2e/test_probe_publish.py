"""The probe on a (fake) node: GpuNode status, the Node's labels and its megagpu.io/gpu."""

from __future__ import annotations

import subprocess
import sys
import uuid

from kubernetes import client

from megagpu.devcluster import processes
from tests.e2e.conftest import ROOT
from tests.e2e.test_scheduler_extender import wait_for


def test_probe_publishes_labels_capacity_and_gpunode_and_removes_stale_labels(api, kubeconfig):
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    name = f"probe-e2e-{uuid.uuid4().hex[:6]}"
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(
                name=name,
                annotations={"kwok.x-k8s.io/node": "fake"},
                labels={"megagpu.io/backend.cuda": "true", "megagpu.io/gpu.count": "8"},
            )
        )
    )
    probe = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "megagpu",
            "probe",
            "--publish",
            "--node-name",
            name,
            "--kubeconfig",
            str(kubeconfig),
            "--listen",
            f"127.0.0.1:{processes.free_port()}",
            "--interval",
            "1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def published():
            labels = core.read_node(name).metadata.labels or {}
            return labels if labels.get("megagpu.io/backend.cpu") == "true" else None

        labels = wait_for(published, 30, "the probe's labels on the Node")
        # This machine has no GPU: the stale GPU labels are gone, the CPU is there.
        assert "megagpu.io/backend.cuda" not in labels and "megagpu.io/gpu.count" not in labels
        capacity = wait_for(
            lambda: (core.read_node_status(name).status.capacity or {}).get("megagpu.io/gpu"),
            30,
            "megagpu.io/gpu in capacity",
        )
        assert capacity == "0"
        gpunode = custom.get_cluster_custom_object("megagpu.io", "v1alpha1", "gpunodes", name)
        assert gpunode["status"]["backends"]["cpu"]["available"] is True
        assert gpunode["status"]["backends"]["cuda"]["available"] is False
        assert "NVML" in gpunode["status"]["backends"]["cuda"]["reason"]
        assert probe.poll() is None
    finally:
        probe.terminate()
        out, _ = probe.communicate(timeout=20)
        core.delete_node(name)
        try:
            custom.delete_cluster_custom_object("megagpu.io", "v1alpha1", "gpunodes", name)
        except client.exceptions.ApiException:
            pass
    assert "Traceback" not in out, out
