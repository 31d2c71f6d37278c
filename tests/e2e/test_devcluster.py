"""`megagpu dev` lifecycle and faults, in an isolated cache that links the built binaries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from megagpu.devcluster import binaries, cluster
from tests.e2e.conftest import ROOT


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    """An XDG cache holding links to the real binaries (so nothing is rebuilt)."""
    binaries.ensure(print)
    home = tmp_path / "xdg"
    target = home / "megagpu" / binaries.VERSION_KEY / "bin"
    target.mkdir(parents=True)
    for name in (*binaries.NAMES, *(f".{n}-version" for n in binaries.STAMPED)):
        (target / name).symlink_to(binaries.bin_dir() / name)
    yield home
    dev(home, "down")


def dev(home: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(home)}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "megagpu", "dev", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
        cwd=ROOT,
    )


def processes_under(path: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(path) in cmdline:
                found.append(cmdline)
    return found


def assert_clean_error(out: subprocess.CompletedProcess[str], needle: str) -> None:
    assert out.returncode == 1, out.stdout + out.stderr
    assert needle in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_up_status_kubeconfig_down(cache: Path):
    assert dev(cache, "status").returncode == 1
    assert dev(cache, "kubeconfig").returncode == 1
    up = dev(cache, "up", "--no-components")  # the session cluster holds the component ports
    assert up.returncode == 0, up.stdout + up.stderr
    assert dev(cache, "up", "--no-components").stdout.startswith("the dev cluster is already up")
    assert dev(cache, "status").returncode == 0
    kubeconfig = dev(cache, "kubeconfig").stdout.strip().splitlines()[-1]
    assert Path(kubeconfig).is_absolute() and Path(kubeconfig).exists()
    assert processes_under(cache)
    assert dev(cache, "down").returncode == 0
    assert processes_under(cache) == []
    assert dev(cache, "status").returncode == 1


def test_stale_cluster_is_replaced(cache: Path):
    name = cluster.paths().name  # the cluster name these tests run under
    stale = cache / "megagpu" / binaries.VERSION_KEY / "kwok" / "clusters" / name
    (stale / "megagpu-pids").mkdir(parents=True)
    (stale / "megagpu-pids" / "megagpu-scheduler.pid").write_text("999999")
    (stale / "kubeconfig.yaml").write_text("not: a kubeconfig\n")
    up = dev(cache, "up", "--no-components")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "stale" in up.stdout
    assert dev(cache, "status").returncode == 0


def test_no_go_toolchain(tmp_path: Path):
    out = dev(tmp_path / "empty", "up", path=str(Path(sys.executable).parent) + ":/bin")
    assert_clean_error(out, "Go toolchain")
    assert processes_under(tmp_path) == []


def test_port_in_use(cache: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = dev(cache, "up", "--no-components", "--apiserver-port", str(port))
    assert_clean_error(out, f"port {port} on 127.0.0.1 is already in use")
    assert processes_under(cache) == []


def test_malformed_cluster_spec(cache: Path, tmp_path: Path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("nodes:\n  - name_prefix: [unclosed\n")
    out = dev(cache, "up", "--no-components", "--cluster-spec", str(spec))
    assert_clean_error(out, f"{spec}:")
    assert processes_under(cache) == []
