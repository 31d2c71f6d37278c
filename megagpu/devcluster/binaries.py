"""The control plane's binaries: pinned versions, the version-keyed cache, the cold build."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from megagpu.devcluster.errors import DevClusterError

K8S_VERSION = "1.36.3"
ETCD_VERSION = "3.6.13"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
"""Built into the same bin directory; a stamp file records its version (not in the key, so a
helm bump rebuilds only helm). Likewise containerd and crictl."""
CONTAINERD_VERSION = "v2.4.2"
"""The real nodes' container runtime (containerd, its runc shim and ctr), from its Go module."""
CRI_TOOLS_VERSION = "v1.37.0"
"""crictl, to remove a real node's pods through the CRI when it stops."""
STAMPED = {
    "helm": f"{HELM_VERSION} k8s-stamped",
    "containerd": CONTAINERD_VERSION,
    "crictl": CRI_TOOLS_VERSION,
}
"""The stamp file's content per stamped binary (helm's records that its default Kubernetes
version was stamped as helm's release build does)."""
VERSION_KEY = f"k8s-{K8S_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION.lstrip('v')}"
NAMES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "kube-proxy",
    "kwok",
    "kwokctl",
    "helm",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "crictl",
)
BUILD_SCRIPT = Path(__file__).with_name("build-binaries.sh")
BUILD_DISK_GIB = 6.0
"""Free disk the cold build needs: Go module and build caches (~5 GiB) plus ~0.5 GiB binaries."""

Output = Callable[[str], None]


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-$HOME/.cache}/megagpu``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "megagpu"


def version_dir() -> Path:
    """Everything of this version: ``<cache>/<version-key>``."""
    return cache_root() / VERSION_KEY


def bin_dir() -> Path:
    """Where the binaries live (a contract other tools rely on)."""
    return version_dir() / "bin"


def binary(name: str) -> Path:
    """Path of one binary."""
    return bin_dir() / name


def _current(name: str) -> bool:
    """Whether a stamped binary was built at its pinned version and recipe."""
    stamp = bin_dir() / f".{name}-version"
    return stamp.exists() and stamp.read_text().strip() == STAMPED[name]


def missing() -> list[str]:
    """Binaries not built yet (or, for stamped ones, built at another version)."""
    return [
        n for n in NAMES if not os.access(binary(n), os.X_OK) or (n in STAMPED and not _current(n))
    ]


def ensure(out: Output) -> float:
    """Build what is missing (seconds spent; 0 when everything was cached)."""
    if not missing():
        return 0.0
    go = shutil.which("go")
    if go is None:
        raise DevClusterError(
            f"the cluster binaries ({', '.join(missing())}) are not built and there is no Go "
            "toolchain to build them: install Go 1.26 or newer (https://go.dev/dl) and run "
            f"again, or put prebuilt binaries into {bin_dir()}"
        )
    bin_dir().mkdir(parents=True, exist_ok=True)
    free_gib = shutil.disk_usage(bin_dir()).free / 2**30
    if free_gib < BUILD_DISK_GIB:
        raise DevClusterError(
            f"only {free_gib:.1f} GiB free under {bin_dir()}, and the one-time build needs about "
            f"{BUILD_DISK_GIB:.0f} GiB: free some space, or point XDG_CACHE_HOME (and GOCACHE, "
            "GOMODCACHE) at a larger disk"
        )
    missing_before = missing()
    out(f"building {', '.join(missing_before)} from Go module releases (once; about 8-30 min)")
    start = time.monotonic()
    versions = (
        K8S_VERSION,
        ETCD_VERSION,
        KWOK_VERSION,
        HELM_VERSION,
        CONTAINERD_VERSION,
        CRI_TOOLS_VERSION,
    )
    argv = ["bash", str(BUILD_SCRIPT), str(bin_dir()), *versions]
    modules = 0
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        for line in p.stdout or ():
            elapsed = time.monotonic() - start
            if line.startswith("go: downloading"):
                modules += 1
                if modules % 50 == 0:
                    out(f"[{elapsed:6.0f}s] downloaded {modules} modules")
                continue
            out(f"[{elapsed:6.0f}s] {line.rstrip()}")
    if p.returncode != 0 or missing():
        raise DevClusterError(
            f"the build failed (exit {p.returncode}); the lines above say which module or "
            f"package; binaries still missing: {', '.join(missing()) or 'none'}"
        )
    spent = time.monotonic() - start
    record = {
        "seconds": round(spent, 1),
        "built": missing_before,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (version_dir() / "build.json").write_text(json.dumps(record))
    return spent


def last_build() -> dict[str, object] | None:
    """Time and date of the last build in this cache, if one was recorded."""
    path = version_dir() / "build.json"
    return json.loads(path.read_text()) if path.exists() else None
