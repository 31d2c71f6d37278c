"""Docker archives (the ``docker save`` format that ``ctr images import`` takes).

Written here for one-layer images made of a few files (pause, kube-scheduler); read for checks.
An archive holds ``manifest.json`` (config name, repo tags, layer names), the image config
(named by its sha256) and each layer as an uncompressed tar whose sha256 is its ``diff_id``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

EPOCH = "1970-01-01T00:00:00Z"
"""Creation time written into configs: a fixed one, so that the same inputs give the same image."""
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


class File(NamedTuple):
    """One file of a layer."""

    path: str
    """Absolute path in the image, e.g. ``/usr/local/bin/kube-scheduler``."""
    source: Path
    """The file on this machine."""
    mode: int = 0o755


class Contents(NamedTuple):
    """What an archive says about its image."""

    repo_tags: list[str]
    config_digest: str
    """``sha256:<hex>`` of the config document: the image ID."""
    config: dict[str, Any]
    layers: int


def architecture() -> str:
    """The machine's architecture in OCI terms (``amd64``, ``arm64``)."""
    machine = platform.machine()
    return ARCHITECTURES.get(machine, machine)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _layer(files: Sequence[File], target: Path) -> None:
    """An uncompressed layer tar: the files and their parent directories, owned by root."""
    directories = sorted(
        {str(parent) for f in files for parent in Path(f.path).parents if str(parent) != "/"}
    )
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in directories:
            info = tarfile.TarInfo(directory.lstrip("/") + "/")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for f in files:
            info = tarfile.TarInfo(f.path.lstrip("/"))
            info.size, info.mode = f.source.stat().st_size, f.mode
            with open(f.source, "rb") as data:
                tar.addfile(info, data)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def write(
    path: Path, ref: str, files: Sequence[File], settings: dict[str, Any], created_by: str
) -> str:
    """Write a one-layer image tagged ``ref`` to ``path`` (atomically); returns its image ID.

    ``settings`` is the config's ``config`` object (``Entrypoint``, ``Env``, ``User``...).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        layer = Path(work) / "layer.tar"
        _layer(files, layer)
        diff_id = _sha256(layer)
        config = {
            "architecture": architecture(),
            "os": "linux",
            "created": EPOCH,
            "config": settings,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
            "history": [{"created": EPOCH, "created_by": created_by}],
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_id = hashlib.sha256(config_bytes).hexdigest()
        manifest = [
            {"Config": f"{config_id}.json", "RepoTags": [ref], "Layers": [f"{diff_id}/layer.tar"]}
        ]
        partial = Path(work) / "image.tar"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, f"{config_id}.json", config_bytes)
            tar.add(layer, arcname=f"{diff_id}/layer.tar")
            _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        os.replace(partial, path)
    return f"sha256:{config_id}"


def read(path: Path) -> Contents:
    """The tags, image ID and config of a one-image archive (``docker save``, ``buildah push``)."""
    with tarfile.open(path) as tar:
        manifest = json.load(_member(tar, "manifest.json"))
        if len(manifest) != 1:
            raise ValueError(f"{path}: expected one image, found {len(manifest)}")
        entry = manifest[0]
        config = json.load(_member(tar, entry["Config"]))
    return Contents(
        repo_tags=list(entry.get("RepoTags") or []),
        config_digest="sha256:" + entry["Config"].removesuffix(".json"),
        config=config,
        layers=len(entry["Layers"]),
    )


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    f = tar.extractfile(name)
    if f is None:
        raise ValueError(f"{tar.name!s}: {name} is not a file")
    return f
