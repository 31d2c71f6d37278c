"""The image's base: a Debian root filesystem from packages (mmdebstrap), cached by its recipe."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

from megagpu.devcluster import buildsteps

SUITE = "bookworm"
"""The python image's Debian release (python:3.11-slim-bookworm), so both bases match."""
PACKAGES = ("python3", "python3-venv", "ca-certificates", "libvulkan1")
"""What the Dockerfile needs from its base: python with venv, CA certificates, and the Vulkan
loader of the runtime stage (present, the Dockerfile installs nothing)."""
SOURCES = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
"""The apt sources of Debian's own container images (with updates and security fixes)."""
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
)
"""Leave out manuals, docs (but licences) and translations, as the slim images do."""
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
"""The base image's environment (a root filesystem has none; the Dockerfile extends PATH)."""


class Recipe(NamedTuple):
    """Everything that decides the root filesystem's contents."""

    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES
    sources: tuple[str, ...] = SOURCES
    dpkg_options: tuple[str, ...] = DPKG_OPTIONS

    def key(self) -> str:
        """Cache key: ``debian-<suite>-<hash of the rest>``; another package list, another key."""
        body = json.dumps([sorted(self.packages), self.sources, self.dpkg_options]).encode()
        return f"debian-{self.suite}-{hashlib.sha256(body).hexdigest()[:12]}"

    def ref(self) -> str:
        """The local base image's name, passed to the Dockerfile as ``PYTHON_IMAGE``."""
        return f"localhost/megagpu-base:{self.key()}"

    def mmdebstrap_argv(self, target: Path) -> list[str]:
        """Build the root filesystem as a tarball at ``target``."""
        argv = [
            buildsteps.require("mmdebstrap"),
            "--variant=minbase",
            "--format=tar",
            f"--include={','.join(self.packages)}",
        ]
        argv += [f"--dpkgopt={option}" for option in self.dpkg_options]
        return [*argv, self.suite, str(target), *self.sources]


def ensure_rootfs(recipe: Recipe, directory: Path, out: buildsteps.Output) -> Path:
    """The root filesystem tarball of ``recipe`` under ``directory``; made once (about a minute)."""
    tarball = directory / f"{recipe.key()}.tar"
    if tarball.exists():
        return tarball
    out(f"base root filesystem: Debian {recipe.suite} with {', '.join(recipe.packages)} (once)")
    partial = tarball.with_suffix(".partial")
    try:
        buildsteps.run(
            "the Debian base (mmdebstrap)",
            recipe.mmdebstrap_argv(partial),
            directory / "logs" / "mmdebstrap.log",
            out,
        )
        os.replace(partial, tarball)
    finally:
        partial.unlink(missing_ok=True)
    return tarball
