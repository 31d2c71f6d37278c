"""The tests' own cluster leaves a user's dev cluster as it was (its learned policy above all).

A user's dev cluster runs in this machine's own network namespace under the default name (the
test starts one when none runs, and stops only what it started). The e2e tests' way of running,
a network namespace and a cluster name of their own, then runs a test that learns; the user's
Q-state ConfigMap must be byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from megagpu.devcluster import binaries, cluster
from tests.e2e.conftest import ROOT

NETNS_SETUP = (
    "ip link set lo up && ip link add mgdefault type veth peer name mgdefault-peer"
    " && ip link set mgdefault up && ip link set mgdefault-peer up"
    " && ip addr add 198.51.100.1/32 dev mgdefault && ip route add default dev mgdefault"
)
"""What make test does in the tests' network namespace (a default route for the API server)."""
USER_ENV = {k: v for k, v in os.environ.items() if k != cluster.NAME_VARIABLE}
LEARNING_TEST = (
    "tests/e2e/test_operator.py::test_mixed_workloads_succeed_and_each_outcome_is_learned_once"
)


def users_network() -> str:
    """The network namespace the tests were started from (that of an ancestor process)."""
    ours = os.readlink("/proc/self/ns/net")
    pid = os.getppid()
    while pid > 1:
        path = f"/proc/{pid}/ns/net"
        if os.readlink(path) != ours:
            return path
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    pytest.fail("run in a network namespace of its own, as make release-test does")


def in_users_network(*argv: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={users_network()}", *argv],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=ROOT,
        env=USER_ENV,
    )


def megagpu_as_user(*args: str) -> subprocess.CompletedProcess[str]:
    return in_users_network(sys.executable, "-m", "megagpu", *args)


def q_state_digest() -> str | None:
    """sha256 of the user's Q-state ConfigMap data (None while it does not exist)."""
    kubeconfig = megagpu_as_user("dev", "kubeconfig").stdout.strip()
    done = in_users_network(
        str(ROOT / ".venv" / "bin" / "kubectl"),
        "--kubeconfig",
        kubeconfig,
        "get",
        "configmap",
        "-n",
        "megagpu-system",
        "megagpu-policy-state",
        "-o",
        "jsonpath={.data}",
        timeout_s=30,
    )
    return hashlib.sha256(done.stdout.encode()).hexdigest() if done.returncode == 0 else None


def test_running_the_tests_leaves_a_users_q_state_byte_identical():
    users = cluster.Paths(binaries.version_dir() / "kwok", cluster.DEFAULT_NAME)
    started = not users.cluster.exists()
    if not started and megagpu_as_user("dev", "status").returncode != 0:
        pytest.skip("your dev cluster is not healthy: the test leaves it alone")
    if started:
        up = megagpu_as_user("dev", "up")
        assert up.returncode == 0, up.stdout + up.stderr
    try:
        if q_state_digest() is None:  # give the user's policy something learned to lose
            example = str(ROOT / "examples" / "workloads" / "llama-inference.yaml")
            kubeconfig = megagpu_as_user("dev", "kubeconfig").stdout.strip()
            kubectl = str(ROOT / ".venv" / "bin" / "kubectl")
            applied = in_users_network(kubectl, "--kubeconfig", kubeconfig, "apply", "-f", example)
            assert applied.returncode == 0, applied.stderr
            deadline = time.monotonic() + 120
            while q_state_digest() is None:
                assert time.monotonic() < deadline, "the user's cluster learned nothing"
                time.sleep(1)
        before = q_state_digest()
        child = subprocess.run(
            [
                "unshare",
                "--net",
                "sh",
                "-c",
                f'{NETNS_SETUP} && exec env MEGAGPU_DEV_CLUSTER=megagpu-iso "$@"',
                "sh",
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-p",
                "no:cacheprovider",
                LEARNING_TEST,
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            cwd=ROOT,
        )
        assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-2000:]
        assert "1 passed" in child.stdout
        assert q_state_digest() == before
    finally:
        if started:
            down = megagpu_as_user("dev", "down")
            assert down.returncode == 0, down.stdout + down.stderr
