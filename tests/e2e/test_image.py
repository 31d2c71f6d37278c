"""The images `make image` builds without a registry: their archives, and containerd running them.

Builds what is not cached (about 1.5 min cold on a 2-core VM, seconds warm); needs no dev cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from megagpu.devcluster import binaries, docker_archive, images, processes


@pytest.fixture(scope="module")
def built() -> dict[str, images.Archive]:
    return {archive.ref: archive for archive in images.build_all(print)}


def test_the_project_image_is_the_dockerfile_on_the_debian_base(built):
    archive = built[images.PROJECT_REF]
    contents = docker_archive.read(archive.path)
    assert contents.repo_tags == ["localhost/megagpu:dev"]
    config = contents.config["config"]
    assert config["Entrypoint"] == ["megagpu"] and config["Cmd"] == ["--help"]
    assert config["User"] == "10001:10001"
    path = next(e for e in config["Env"] if e.startswith("PATH="))
    assert path.startswith("PATH=/opt/megagpu/bin:")
    with tarfile.open(archive.path) as outer:
        names = set()
        for layer in outer.getnames():
            if layer.endswith(".tar"):
                with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                    names.update(inner.getnames())
    assert "opt/megagpu/bin/megagpu" in names
    assert any(n.endswith("site-packages/megagpu/workload/spirv/gemm.spv") for n in names)
    assert "usr/lib/x86_64-linux-gnu/libvulkan.so.1" in names or os.uname().machine != "x86_64"


def test_the_scheduler_and_pause_images(built):
    scheduler = docker_archive.read(built[images.SCHEDULER_REF].path)
    assert scheduler.repo_tags == [f"registry.k8s.io/kube-scheduler:v{binaries.K8S_VERSION}"]
    pause = docker_archive.read(built[images.PAUSE_REF].path)
    assert pause.repo_tags == [f"registry.k8s.io/pause:{images.PAUSE_VERSION}"]
    assert pause.config["config"] == {"Entrypoint": ["/pause"], "User": "65535:65535"}
    program = images.version_image_dir() / "pause"
    version = subprocess.run([program, "-v"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"pause.c v{images.PAUSE_VERSION}"
    headers = subprocess.run(["readelf", "-l", program], capture_output=True, text=True)
    assert "INTERP" not in headers.stdout, "pause must be static"


CONTAINERD_CONFIG = """version = 3
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime",
  "io.containerd.cri.v1.images", "io.containerd.nri.v1.nri"]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
"""


@pytest.fixture
def containerd(tmp_path) -> Iterator[Path]:
    """A private containerd (no CRI) of the binary cache; stopped by its pid."""
    exe = binaries.binary("containerd")
    if not exe.exists() or shutil.which("runc") is None:
        pytest.skip("containerd (make binaries) or runc (make host-packages) is missing")
    (tmp_path / "config.toml").write_text(CONTAINERD_CONFIG.format(d=tmp_path))
    env = {**os.environ, "PATH": f"{binaries.bin_dir()}:{os.environ['PATH']}"}
    with open(tmp_path / "containerd.log", "wb") as log:
        proc = subprocess.Popen(
            [exe, "--config", tmp_path / "config.toml"], stdout=log, stderr=log, env=env
        )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "c.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        yield tmp_path / "c.sock"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_containerd_imports_and_runs_every_image(built, containerd):
    ctr = binaries.binary("ctr")
    images.load_all(list(built.values()), ctr, [containerd], print)

    def run(ref: str, *argv: str) -> str:
        name = f"t{time.monotonic_ns()}"
        command = [ctr, "--address", containerd, "-n", "k8s.io", "run", "--rm", ref, name, *argv]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run(images.PAUSE_REF, "/pause", "-v").strip() == f"pause.c v{images.PAUSE_VERSION}"
    assert run(images.SCHEDULER_REF, "kube-scheduler", "--version").startswith(
        f"Kubernetes v{binaries.K8S_VERSION}"
    )
    assert "uid=10001" in run(images.PROJECT_REF, "id")
    assert "bench-workload" in run(images.PROJECT_REF, "megagpu", "--help")


def test_an_unreachable_debian_mirror_is_one_line(tmp_path):
    proxy = f"http://127.0.0.1:{processes.free_port()}"  # nothing listens: apt cannot connect
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "http_proxy": proxy}
    done = subprocess.run(
        [sys.executable, "-m", "megagpu", "dev", "image", "--no-load"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "error: the Debian base (mmdebstrap): the Debian package mirror (deb.debian.org) cannot "
        "be reached (E: Failed to fetch http://deb.debian.org/"
    )
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not list((tmp_path / "megagpu" / "images").glob("*.tar"))
