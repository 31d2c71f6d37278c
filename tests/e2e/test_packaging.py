"""The wheel, installed into a fresh virtual environment, starts every megagpu entrypoint.

The image installs the package into a venv the same way (Dockerfile); test_image.py builds the
image itself (without a Docker engine) and runs it in containerd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from megagpu.devcluster import processes
from tests.e2e.conftest import ROOT
from tests.e2e.test_scheduler_extender import wait_for


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    # make test runs the e2e tests in a network namespace of their own: the dependencies come
    # from the wheelhouse it filled before (the same wheels the index serves).
    wheelhouse = os.environ.get("MEGAGPU_WHEELHOUSE")
    offline = ["--no-build-isolation"] if wheelhouse else []
    sources = ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            *offline,
            "-q",
            "-w",
            str(tmp),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(tmp.glob("megagpu-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    install = subprocess.run(
        [str(tmp / "venv/bin/pip"), "install", "-q", *sources, f"{wheel}[kube,probe,tui]"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr
    return tmp / "venv" / "bin" / "megagpu"


def run(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # From /tmp, so that the repository's own package cannot be imported by accident.
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=120, check=False, cwd="/tmp"
    )


def test_the_installed_wheel_runs_every_entrypoint(installed, kubeconfig):
    assert "tui" in run(installed, "--help").stdout
    for command in ("operator", "extender", "probe", "tui", "uninstall", "policy", "explain"):
        assert run(installed, command, "--help").returncode == 0, command

    probe = run(installed, "probe", "--once", "--format", "json")
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout)["backends"]["cpu"]["available"]

    port, metrics = processes.free_port(), processes.free_port()
    extender = subprocess.Popen(
        [
            str(installed),
            "extender",
            "--snapshot",
            str(ROOT / "examples/clusters/dev.yaml"),
            "--port",
            str(port),
            "--metrics-port",
            str(metrics),
        ],
        cwd="/tmp",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(ready, 30, "the installed extender to be ready")
    finally:
        extender.terminate()
        extender.wait(10)

    operator = subprocess.Popen(
        [
            str(installed),
            "operator",
            "--kubeconfig",
            str(kubeconfig),
            "--liveness",
            f"http://127.0.0.1:{processes.free_port()}/healthz",
            "--metrics",
            f"127.0.0.1:{processes.free_port()}",
        ],
        cwd="/tmp",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(8)
        assert operator.poll() is None, operator.stdout.read() if operator.stdout else ""
    finally:
        operator.terminate()
        out, _ = operator.communicate(timeout=20)
    assert "standby" in out or "holding lease" in out, out

    uninstall = run(installed, "uninstall", "--kubeconfig", str(kubeconfig))
    assert uninstall.returncode == 0 and "finalizers" in uninstall.stdout, uninstall.stderr
