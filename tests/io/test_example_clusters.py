"""Every example cluster spec loads and runs a short simulation of example workloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from megagpu.io import cluster_spec, presets
from megagpu.tui.sim_source import SimSource

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "clusters").glob("*.yaml"))


def test_there_are_example_clusters():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_cluster_simulates(path):
    nodes = cluster_spec.load(path)
    source = SimSource(nodes, presets.mixed_table(), seed=1)
    assert len(source.records) > 0.9 * len(source.jobs)
    assert {r.backend for r in source.records.values()} <= {b for n in nodes for b in n.backends}
