"""A real node whose runtime dies: dev status names it, and the session's dev down still cleans up.

A module of its own, so that it runs after the chart's module has uninstalled the release.
"""

from __future__ import annotations

import os
import signal

from megagpu.devcluster import cluster, processes
from tests.e2e.conftest import megagpu
from tests.release.test_chart_release import wait_for


def test_a_dead_runtime_is_reported_and_down_still_cleans_up(bare_cluster):
    """containerd of the real node killed: status names it; the fixture's down leaves nothing."""
    _, node = bare_cluster
    pids = cluster.paths().pids
    pid = processes.pids(pids)[f"containerd-{node.name}"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not processes.alive(pid), 10, "containerd to die")
    status = megagpu("dev", "status")
    assert status.returncode == 1, status.stdout
    assert f"containerd-{node.name}" in status.stdout and "not running" in status.stdout
    assert "Traceback" not in status.stdout + status.stderr
