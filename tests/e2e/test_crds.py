"""CRDs in the real API server: apply, printer columns, explain, category, validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, kubectl

INVALID = sorted((ROOT / "examples" / "invalid").glob("*.yaml"))


def test_examples_apply_and_show_printer_columns(kubeconfig: Path, namespace: str):
    out = kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(ROOT / "examples/workloads"))
    assert out.returncode == 0, out.stderr
    listed = kubectl(kubeconfig, "get", "gw", "-A")
    header = listed.stdout.splitlines()[0].split()
    assert header == [
        "NAMESPACE",
        "NAME",
        "TYPE",
        "PHASE",
        "BACKEND",
        "NODE",
        "MODE",
        "REWARD",
        "AGE",
    ]
    mine = [line for line in listed.stdout.splitlines() if line.startswith(namespace)]
    assert len(mine) == len(list((ROOT / "examples/workloads").glob("*.yaml")))


def test_explain_prints_the_field_description(kubeconfig: Path):
    out = kubectl(kubeconfig, "explain", "gpuworkload.spec.backends")
    assert out.returncode == 0, out.stderr
    assert "Acceptable backends in order of preference" in out.stdout


def test_category_lists_all_three_kinds(kubeconfig: Path, namespace: str):
    kubectl(
        kubeconfig,
        "apply",
        "-n",
        namespace,
        "-f",
        str(ROOT / "examples/workloads/llama-inference.yaml"),
    )
    out = kubectl(kubeconfig, "get", "megagpu", "-A")  # GpuNodes: the probe's, one per node
    assert out.returncode == 0, out.stderr
    for kind in (
        "gpuworkload.megagpu.io/",
        "gpunode.megagpu.io/",
        "gpuschedulingpolicy.megagpu.io/default",
    ):
        assert kind in out.stdout


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_examples_are_rejected_naming_the_field(
    kubeconfig: Path, namespace: str, path: Path
):
    mistake = re.search(r"(spec\.[A-Za-z]+)", path.read_text().splitlines()[0])
    assert mistake, f"{path} must name the field in its first comment line"
    out = kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(path))
    assert out.returncode != 0
    assert mistake.group(1) in out.stderr, out.stderr


def test_crds_are_applied_server_side(kubeconfig: Path):
    out = kubectl(
        kubeconfig,
        "get",
        "crd",
        "gpuworkloads.megagpu.io",
        "-o",
        "jsonpath={.metadata.managedFields[*].operation}",
    )
    assert "Apply" in out.stdout.split()


def test_simulated_probe_publishes_every_fake_node(kubeconfig: Path):
    out = kubectl(
        kubeconfig,
        "get",
        "gpunodes",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.summary.devices} {end}",
    )
    published = dict(pair.split("=") for pair in out.stdout.split())
    nodes = kubectl(kubeconfig, "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}")
    assert set(nodes.stdout.split()) <= set(published)
    assert published["h100-0"] == "8" and published["cpu-0"] == "0"
