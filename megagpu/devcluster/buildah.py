"""buildah without a daemon: storage in the cache, the Dockerfile built, archives saved."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from megagpu.devcluster import buildsteps
from megagpu.devcluster.errors import DevClusterError

DRIVERS = ("overlay", "vfs")
"""Tried in this order: overlay shares layers; vfs (full copies) works on any filesystem."""
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
"""The host's CA bundle, mounted into RUN steps: pip inside the build needs it where TLS to the
package index goes through a proxy with its own authority. Not kept in the image."""


@dataclass(frozen=True)
class Buildah:
    """One buildah storage: its own root, never ``/var/lib/containers``."""

    exe: str
    root: Path
    """Images and layers (in the cache, so that they survive reboots)."""
    runroot: Path
    """Locks and mount state, one per root (under ``/run``: cleared by a reboot, as buildah
    expects)."""
    driver: str

    def argv(self, *args: str) -> list[str]:
        """A buildah command line on this storage."""
        return [
            self.exe,
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            self.driver,
            *args,
        ]


def storage(root: Path) -> Buildah:
    """The storage at ``root``; its driver is chosen once (overlay, else vfs) and remembered."""
    exe = buildsteps.require("buildah")
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or "/run")
    runroot = runtime / f"megagpu-buildah-{hashlib.sha256(bytes(root)).hexdigest()[:12]}"
    chosen = root.parent / f"{root.name}.driver"
    root.parent.mkdir(parents=True, exist_ok=True)
    if chosen.exists():
        return Buildah(exe, root, runroot, chosen.read_text().strip())
    errors = []
    for driver in DRIVERS:
        candidate = Buildah(exe, root, runroot, driver)
        probe = subprocess.run(candidate.argv("images"), capture_output=True, text=True)
        if probe.returncode == 0:
            chosen.write_text(driver)
            return candidate
        errors.append(f"{driver}: {probe.stderr.strip().splitlines()[-1:]}")
    raise DevClusterError(
        f"buildah cannot use {root} with any storage driver ({'; '.join(errors)}); "
        "point XDG_CACHE_HOME at a local disk and run again"
    )


def has_image(b: Buildah, ref: str) -> bool:
    """Whether the storage holds ``ref``."""
    found = subprocess.run(
        b.argv("inspect", "--type", "image", ref),
        capture_output=True,
        text=True,
    )
    return found.returncode == 0


def import_rootfs(b: Buildah, tarball: Path, ref: str, env: dict[str, str], logs: Path) -> None:
    """Make image ``ref`` from a root filesystem tarball (one layer, ``env`` in its config)."""
    log = logs / "base-import.log"
    container = buildsteps.capture("buildah from scratch", b.argv("from", "scratch"), log)
    try:
        buildsteps.capture("buildah add", b.argv("add", container, str(tarball), "/"), log)
        settings = [arg for k, v in env.items() for arg in ("--env", f"{k}={v}")]
        buildsteps.capture("buildah config", b.argv("config", *settings, container), log)
        commit = b.argv("commit", "--format", "docker", container, ref)
        buildsteps.capture("buildah commit", commit, log)
    finally:
        subprocess.run(b.argv("rm", container), capture_output=True)


def bud_argv(
    b: Buildah, context: Path, tag: str, build_args: dict[str, str], iidfile: Path
) -> list[str]:
    """``buildah bud`` of ``context``'s Dockerfile.

    Chroot isolation (no OCI runtime, no cgroups), cached layers, no container left behind by a
    failed step, the Docker image format (its config digest is the image ID an archive names),
    local bases only.
    """
    args = ["bud", "--isolation", "chroot", "--layers", "--force-rm", "--format", "docker"]
    args += ["--pull=never"]
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    if CA_BUNDLE.exists():
        args += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    args += ["--iidfile", str(iidfile), "--tag", tag, "--file", str(context / "Dockerfile")]
    return b.argv(*args, str(context))


def cache_hits(bud_output: str) -> set[str]:
    """IDs of the images a build reused (``--> Using cache <id>``)."""
    return set(re.findall(r"^--> Using cache ([0-9a-f]{64})$", bud_output, re.MULTILINE))


def prune(b: Buildah, since: float, keep: set[str]) -> int:
    """Remove the earlier builds' steps; returns how many images went.

    Kept: named images, those created at ``since`` or later (this build's new steps) and ``keep``
    (the steps it reused). A source change otherwise leaves ~0.3 GB of stale layers behind.
    """
    listed = subprocess.run(
        b.argv("images", "--all", "--no-trunc", "--json"), capture_output=True, text=True
    )
    if listed.returncode != 0:
        return 0
    stale = [
        image["id"].removeprefix("sha256:")
        for image in json.loads(listed.stdout or "[]")
        if not image.get("names") and image["created"] < int(since)
    ]
    stale = [image for image in stale if image not in keep]
    if stale:
        subprocess.run(b.argv("rmi", *stale), capture_output=True)
    return len(stale)


def push_argv(b: Buildah, image_id: str, archive: Path, ref: str) -> list[str]:
    """Save an image as a docker-archive tagged ``ref``."""
    return b.argv("push", "--quiet", image_id, f"docker-archive:{archive}:{ref}")
