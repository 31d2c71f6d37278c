"""Health with hysteresis, and the Node labels and capacity a reading publishes."""

from __future__ import annotations

from unittest import mock

import pytest

from megagpu.kube import gpunodes
from megagpu.probe import health, node, readings


def reading(healthy: bool = True, backends: tuple[str, ...] = ("cuda", "vulkan", "cpu")):
    out = node.NodeReading("gpu-1")
    for name in backends:
        kind = "cpu" if name == "cpu" else "gpu"
        device = readings.Device(
            0,
            "NVIDIA H100 80GB HBM3" if kind == "gpu" else "CPU",
            uuid="U0",
            memory_bytes=80 * 2**30,
            kind=kind,
            healthy=healthy or kind == "cpu",
        )
        out.backends.append(readings.Backend(name, True, devices=[device]))
    return out


def test_a_failed_device_returns_only_after_reading_healthy_for_the_recovery_time():
    now = [0.0]
    gate = health.HealthGate(60, clock=lambda: now[0])
    assert gate.apply(reading()).backend("cuda").healthy
    assert not gate.apply(reading(healthy=False)).backend("cuda").healthy
    now[0] = 30.0
    recovering = gate.apply(reading()).backend("cuda")
    assert (
        not recovering.healthy
        and "recovering: healthy for 0 s of the 60 s" in recovering.devices[0].reason
    )
    now[0] = 70.0
    assert not gate.apply(reading()).backend("cuda").healthy  # 40 s so far
    now[0] = 95.0
    assert gate.apply(reading()).backend("cuda").healthy  # 65 s
    now[0] = 96.0
    assert not gate.apply(reading(healthy=False)).backend("cuda").healthy  # fails again
    with pytest.raises(ValueError):
        health.HealthGate(-1)


def test_labels_name_the_backends_product_count_and_memory_and_remove_stale_ones():
    labels = gpunodes.node_labels(reading(backends=("cuda", "vulkan", "cpu")))
    assert labels["megagpu.io/backend.cuda"] == labels["megagpu.io/backend.cpu"] == "true"
    assert labels["megagpu.io/backend.metal"] is None
    assert labels["megagpu.io/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["megagpu.io/gpu.count"] == "1"  # the H100 is seen by cuda and vulkan: once
    assert labels["megagpu.io/gpu.memory-mib"] == "81920"
    cpu_only = gpunodes.node_labels(reading(backends=("cpu",)))
    assert cpu_only["megagpu.io/backend.cuda"] is None and cpu_only["megagpu.io/gpu.count"] is None


@pytest.mark.parametrize(("mode", "status_patches"), [("megagpu", 1), ("vendor", 0)])
def test_capacity_is_the_healthy_gpus_in_megagpu_mode_only(mode, status_patches):
    core = mock.Mock()
    gpunodes.publish_node(core, "gpu-1", reading(healthy=False), mode)
    assert core.patch_node.call_count == 1
    assert core.patch_node_status.call_count == status_patches
    if status_patches:
        body = core.patch_node_status.call_args.args[1]
        assert body["status"]["capacity"]["megagpu.io/gpu"] == "0"
