"""The Helm chart on the dev cluster's real node: its own cluster, started without components.

The chart brings the megagpu-scheduler, the extender, the operator and the probe itself, so the
cluster runs none of megagpu's host processes (DESIGN section 6: the two never act on one
cluster). `make release-test` (and make test's last phase) runs it in a network namespace of its
own under the cluster name megagpu-release, so no other dev cluster of the machine is touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from megagpu.devcluster import cluster, realnodes
from tests.e2e.conftest import megagpu


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.release)


@pytest.fixture(scope="session")
def bare_cluster() -> Iterator[tuple[Path, realnodes.RealNode]]:
    """A dev cluster with one real node and no megagpu processes (kubeconfig, real node)."""
    if cluster.paths().name == cluster.DEFAULT_NAME:
        pytest.exit(
            "the release tests start a dev cluster of their own: run them with `make "
            "release-test` (its own network namespace and MEGAGPU_DEV_CLUSTER=megagpu-release)",
            returncode=2,
        )
    up = megagpu("dev", "up", "--real-nodes", "1", "--no-components")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        (node,) = realnodes.recorded(cluster.paths().pids)
        yield cluster.paths().kubeconfig, node
    finally:
        if not os.environ.get("MEGAGPU_KEEP_CLUSTER"):
            down = megagpu("dev", "down")
            assert down.returncode == 0, down.stdout + down.stderr
            left = realnodes.leftovers(cluster.paths().name)
            assert left == [], "dev down left these on the machine"
