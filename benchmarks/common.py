"""What every benchmark records: the command, the machine and the date."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on."""
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def header() -> dict[str, Any]:
    """Command, machine, date and git commit of this run."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit,
    }


def provenance(result: dict[str, Any]) -> str:
    """``Command: `...`; commit ...; date; CPU, N cores`` of a result made with ``header``."""
    return (
        f"Command: `{result['command']}`; commit {result['commit']}; {result['date']}; "
        f"{result['machine']['cpu']}, {result['machine']['cores']} cores"
    )


def dev(env: dict[str, str], *args: str, check: bool = True) -> str:
    """``megagpu dev ARGS`` for the cluster ``env`` names (an hour at most); its output.

    With ``check``, a failure exits with what the command printed.
    """
    done = subprocess.run(
        [sys.executable, "-m", "megagpu", "dev", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if check and done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    return done.stdout


def dev_up(env: dict[str, str], spec: Path) -> Path:
    """A dev cluster of ``spec``'s nodes without components; its kubeconfig."""
    dev(env, "up", "--no-components", "--cluster-spec", str(spec))
    return Path(dev(env, "kubeconfig").split()[-1])
