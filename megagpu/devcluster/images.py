"""Images without a registry: built here, saved as archives, imported into real nodes' containerd.

Three images (DESIGN section 6):

- ``localhost/megagpu:dev``: the repository's Dockerfile, built by buildah on a Debian base made
  from packages (the Dockerfile's ``PYTHON_IMAGE`` argument), since no registry can be reached.
- ``registry.k8s.io/kube-scheduler:v<K8S_VERSION>``: the built kube-scheduler binary, named as
  the chart pulls it (``scheduler.image`` in its values).
- ``registry.k8s.io/pause:<PAUSE_VERSION>``: the pinned release's static pause, the sandbox image.

Everything is cached: the base root filesystem by its recipe, buildah's layers, each archive
until its inputs change.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from megagpu.devcluster import binaries, buildah, buildsteps, debian_base, docker_archive
from megagpu.devcluster.errors import DevClusterError

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_REF = "localhost/megagpu:dev"
SCHEDULER_REF = f"registry.k8s.io/kube-scheduler:v{binaries.K8S_VERSION}"
PAUSE_VERSION = "3.10.2"
"""The pause of the pinned Kubernetes release (``TAG`` in its ``build/pause/Makefile``)."""
PAUSE_REF = f"registry.k8s.io/pause:{PAUSE_VERSION}"
PAUSE_SOURCE = "build/pause/linux/pause.c"
NAMESPACE = "k8s.io"
"""containerd's namespace for the kubelet's images."""
LOAD_TIMEOUT_S = 600.0


class Archive(NamedTuple):
    """An image saved as a docker-archive."""

    ref: str
    path: Path


def image_dir() -> Path:
    """Images of every version: the base, buildah's storage, the project's archive."""
    return binaries.cache_root() / "images"


def version_image_dir() -> Path:
    """Images of the pinned release (kube-scheduler, pause)."""
    return binaries.version_dir() / "images"


def project_archive() -> Archive:
    """Where :func:`build_project` saves ``localhost/megagpu:dev`` (present once it has run)."""
    return Archive(PROJECT_REF, image_dir() / "megagpu-dev.tar")


def build_project(out: buildsteps.Output, context: Path = REPO_ROOT) -> Archive:
    """Build the Dockerfile as ``localhost/megagpu:dev`` and save it (reused when unchanged)."""
    start = time.monotonic()
    recipe = debian_base.Recipe()
    rootfs = debian_base.ensure_rootfs(recipe, image_dir(), out)
    b = buildah.storage(image_dir() / "storage")
    if not buildah.has_image(b, recipe.ref()):
        out(f"importing the base as {recipe.ref()} (buildah, {b.driver} storage)")
        buildah.import_rootfs(b, rootfs, recipe.ref(), debian_base.ENV, image_dir() / "logs")
    out(f"building {context / 'Dockerfile'} as {PROJECT_REF} (cached layers are reused)")
    iidfile = image_dir() / "megagpu-dev.iid"
    log = image_dir() / "logs" / "bud.log"
    bud_start = time.time()
    buildsteps.run(
        f"the image build (buildah bud of {context / 'Dockerfile'})",
        buildah.bud_argv(b, context, PROJECT_REF, {"PYTHON_IMAGE": recipe.ref()}, iidfile),
        log,
        out,
        show=lambda line: line.startswith(("[", "STEP", "COMMIT", "Successfully installed")),
    )
    image_id = iidfile.read_text().strip()
    pruned = buildah.prune(b, bud_start, buildah.cache_hits(log.read_text()))
    if pruned:
        out(f"removed {pruned} images of earlier builds from buildah's storage")
    archive = project_archive()
    if not _holds(archive, image_id):
        partial = archive.path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        push = buildah.push_argv(b, image_id, partial, archive.ref)
        buildsteps.capture("saving the image", push, image_dir() / "logs" / "push.log")
        partial.replace(archive.path)
    out(f"{archive.ref} {image_id[:19]} -> {archive.path} ({time.monotonic() - start:.0f}s)")
    return archive


def _holds(archive: Archive, image_id: str) -> bool:
    if not archive.path.exists():
        return False
    contents = docker_archive.read(archive.path)
    return contents.config_digest == image_id and contents.repo_tags == [archive.ref]


def _fresh(target: Path, *inputs: Path) -> bool:
    """Whether ``target`` exists and is newer than every input."""
    return target.exists() and all(target.stat().st_mtime >= i.stat().st_mtime for i in inputs)


def build_scheduler(out: buildsteps.Output) -> Archive:
    """The kube-scheduler image from the built binary, at ``/usr/local/bin`` as upstream's."""
    binary = binaries.binary("kube-scheduler")
    if not binary.exists():
        raise DevClusterError(
            f"{binary} is not built, and the kube-scheduler image is made from it: run "
            "`make binaries` (or `megagpu dev build`) first"
        )
    archive = Archive(
        SCHEDULER_REF, version_image_dir() / f"kube-scheduler-v{binaries.K8S_VERSION}.tar"
    )
    if not _fresh(archive.path, binary):
        docker_archive.write(
            archive.path,
            archive.ref,
            [docker_archive.File("/usr/local/bin/kube-scheduler", binary)],
            {
                "Env": [f"PATH={debian_base.ENV['PATH']}"],
                "Entrypoint": ["/usr/local/bin/kube-scheduler"],
            },
            created_by=f"megagpu dev image: {binary}",
        )
    out(f"{archive.ref} -> {archive.path}")
    return archive


def pause_source() -> Path:
    """``pause.c`` of the pinned ``k8s.io/kubernetes`` module (Go downloads it if needed)."""
    module = f"k8s.io/kubernetes@v{binaries.K8S_VERSION}"
    go = shutil.which("go")
    found = None
    if go is not None:
        found = subprocess.run(
            [go, "mod", "download", "-json", module],
            capture_output=True,
            text=True,
            check=False,
            cwd=binaries.cache_root(),
            env={**os.environ, "GOFLAGS": ""},
        )
    if found is None or found.returncode != 0:
        why = "there is no Go toolchain" if found is None else found.stderr.strip()
        raise DevClusterError(
            f"{PAUSE_SOURCE} of {module} is needed for the pause image, and {why}: install Go "
            "1.26 or newer (the cluster binaries need it too) and run again"
        )
    return Path(json.loads(found.stdout)["Dir"]) / PAUSE_SOURCE


def pause_version(source: Path) -> str:
    """The pause version the module's Makefile tags (``TAG ?= 3.10.2``)."""
    makefile = source.parents[1] / "Makefile"
    found = re.search(r"^TAG \?= (\S+)", makefile.read_text(), re.MULTILINE)
    if found is None:
        raise DevClusterError(f"{makefile} names no pause TAG; update images.PAUSE_VERSION by hand")
    return found.group(1)


def build_pause(out: buildsteps.Output) -> Archive:
    """The pause image: the module's ``pause.c`` compiled static (gcc), at ``/pause``."""
    source = pause_source()
    if pause_version(source) != PAUSE_VERSION:
        raise DevClusterError(
            f"k8s.io/kubernetes v{binaries.K8S_VERSION} builds pause {pause_version(source)}, "
            f"but images.PAUSE_VERSION is {PAUSE_VERSION}: set it to match (and containerd's "
            "sandbox image with it)"
        )
    archive = Archive(PAUSE_REF, version_image_dir() / f"pause-{PAUSE_VERSION}.tar")
    binary = version_image_dir() / "pause"
    if not _fresh(binary, source):
        gcc = buildsteps.require("gcc")
        argv = [gcc, "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{PAUSE_VERSION}"]
        log = version_image_dir() / "logs" / "pause.log"
        buildsteps.capture("compiling pause.c", [*argv, "-o", str(binary), str(source)], log)
    if not _fresh(archive.path, binary):
        docker_archive.write(
            archive.path,
            archive.ref,
            [docker_archive.File("/pause", binary)],
            {"Entrypoint": ["/pause"], "User": "65535:65535"},
            created_by=f"megagpu dev image: gcc -static {source}",
        )
    out(f"{archive.ref} -> {archive.path}")
    return archive


def build_all(out: buildsteps.Output) -> list[Archive]:
    """Every image the real nodes need: the project's, kube-scheduler's and pause."""
    return [build_project(out), build_scheduler(out), build_pause(out)]


def for_new_nodes(out: buildsteps.Output) -> list[Archive]:
    """What a new real node gets, for ``dev up`` to load.

    Pause and kube-scheduler (made in seconds when missing), and ``localhost/megagpu:dev`` if
    ``make image`` has built it (``dev up`` does not build it).
    """
    project = project_archive()
    return [build_pause(out), build_scheduler(out), *([project] if project.path.exists() else [])]


def load_argv(ctr: Path, socket: Path, archive: Path) -> list[str]:
    """Import an archive into the kubelet's namespace of the containerd at ``socket``."""
    return [str(ctr), "--address", str(socket), "-n", NAMESPACE, "images", "import", str(archive)]


def load(ctr: Path, socket: Path, archive: Archive) -> None:
    """Import one archive into one containerd."""
    done = subprocess.run(
        load_argv(ctr, socket, archive.path),
        capture_output=True,
        text=True,
        timeout=LOAD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise DevClusterError(
            f"containerd at {socket} did not take {archive.ref} from {archive.path}: {why}; "
            "check that the real node's containerd runs (megagpu dev status)"
        )


def load_all(
    archives: Sequence[Archive], ctr: Path, sockets: Sequence[Path], out: buildsteps.Output
) -> None:
    """Import every archive into every containerd, with the time each took."""
    for socket in sockets:
        for archive in archives:
            start = time.monotonic()
            load(ctr, socket, archive)
            out(f"loaded {archive.ref} into {socket} ({time.monotonic() - start:.1f}s)")
