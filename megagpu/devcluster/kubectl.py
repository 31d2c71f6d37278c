"""Run the cached kubectl against the dev cluster."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from megagpu.devcluster import binaries
from megagpu.devcluster.errors import DevClusterError


def run(
    kubeconfig: Path,
    args: Sequence[str],
    *,
    stdin: str | None = None,
    timeout_s: float = 120.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``kubectl --kubeconfig K ARGS``; raises DevClusterError with kubectl's message on failure."""
    argv = [str(binaries.binary("kubectl")), "--kubeconfig", str(kubeconfig), *args]
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise DevClusterError(f"kubectl {' '.join(args)} did not finish in {timeout_s:.0f}s") from e
    if check and done.returncode != 0:
        raise DevClusterError(f"kubectl {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done
