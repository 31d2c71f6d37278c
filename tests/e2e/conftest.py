"""Session fixture: the tests' own dev cluster (with a real node); a fresh namespace per test.

make test runs them in a network namespace of their own under the cluster name megagpu-e2e, so
a user's dev cluster is never touched. Run without a name ($MEGAGPU_DEV_CLUSTER), the tests would
use the default cluster: when one runs, it belongs to someone, and they stop with a message
instead of learning into it, unless MEGAGPU_E2E_REUSE=1 says to use it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from megagpu.devcluster import binaries, cluster

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


def megagpu(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "megagpu", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    given = os.environ.get("MEGAGPU_E2E_KUBECONFIG")
    if given:  # another cluster (make e2e-kind): only the tests that need no dev components
        yield Path(given)
        return
    started = False
    running = cluster.paths().cluster.exists()
    users = cluster.paths().name == cluster.DEFAULT_NAME
    if running and users and not os.environ.get("MEGAGPU_E2E_REUSE"):
        pytest.exit(
            "a dev cluster is already running: the e2e tests would learn into its policy and "
            "change what it runs. Stop it (megagpu dev down) and run again, or set "
            "MEGAGPU_E2E_REUSE=1 to run against it knowingly",
            returncode=2,
        )
    if megagpu("dev", "status").returncode != 0:
        up = megagpu("dev", "up", "--real-nodes", "1")
        assert up.returncode == 0, up.stdout + up.stderr
        started = True
    yield cluster.paths().kubeconfig
    if started and not os.environ.get("MEGAGPU_KEEP_CLUSTER"):
        down = megagpu("dev", "down")
        assert down.returncode == 0, down.stdout + down.stderr
        from megagpu.devcluster import realnodes

        left = realnodes.leftovers(cluster.paths().name)
        assert left == [], "dev down left these on the machine"


@pytest.fixture(scope="session")
def real_node(kubeconfig: Path) -> str:
    """The name of a real node (kubelet + containerd) of the dev cluster under test."""
    from megagpu.devcluster import realnodes

    nodes = realnodes.recorded(cluster.paths().pids)
    if not nodes:
        pytest.fail(
            "the running dev cluster has no real node: stop it (megagpu dev down) and let the "
            "tests start their own, or start it with --real-nodes 1"
        )
    return nodes[0].name


@pytest.fixture(scope="session")
def api(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(str(kubeconfig))


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    if not os.environ.get("MEGAGPU_KEEP_NAMESPACES"):
        core.delete_namespace(name)


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries.binary("kubectl")), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def restart_apiserver() -> None:
    """kill -9 the dev cluster's kube-apiserver and start it again with the same command line."""
    import signal
    import time

    from megagpu.devcluster import processes

    pid_file = cluster.paths().cluster / "pids" / "kube-apiserver.pid"
    pid = int(pid_file.read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    cwd = os.readlink(f"/proc/{pid}/cwd")
    log = open(cluster.paths().logs / "kube-apiserver.log", "ab")
    os.kill(pid, signal.SIGKILL)
    while processes.alive(pid):
        time.sleep(0.1)
    time.sleep(2)  # the API is away for a while
    proc = subprocess.Popen(
        [a.decode() for a in argv], cwd=cwd, stdout=log, stderr=log, start_new_session=True
    )
    log.close()
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + 60
    while not cluster.api_ready(cluster.paths()):
        assert time.monotonic() < deadline, "kube-apiserver did not come back"
        time.sleep(0.5)
