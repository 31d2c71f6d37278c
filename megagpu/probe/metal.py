"""The metal backend (macOS only): GPUs from ``system_profiler -json``.

On a Mac, ``megagpu probe --node-name NAME --publish`` runs as a native agent (no kubelet runs
pods there in v1). Apple Silicon GPUs share the machine's unified memory; other GPUs report their
(shared or dedicated) VRAM. Metal has no fp64.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from megagpu.probe import readings

COMMAND = ("system_profiler", "-json", "SPDisplaysDataType", "SPHardwareDataType")
TIMEOUT_S = 30.0
_SIZE = re.compile(r"^\s*([0-9.]+)\s*(KB|MB|GB|TB)\s*$", re.I)
_UNITS = {"KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}

Runner = Callable[..., subprocess.CompletedProcess[str]]


def size_bytes(text: Any) -> int | None:
    """``"192 GB"`` -> bytes; None when absent or not a size."""
    found = _SIZE.match(text) if isinstance(text, str) else None
    return int(float(found[1]) * _UNITS[found[2].upper()]) if found else None


def parse(doc: dict[str, Any]) -> readings.Backend:
    """The metal backend from ``system_profiler -json SPDisplaysDataType SPHardwareDataType``."""
    hardware = (doc.get("SPHardwareDataType") or [{}])[0]
    unified = size_bytes(hardware.get("physical_memory"))
    devices, families = [], set()
    for entry in doc.get("SPDisplaysDataType") or []:
        if not isinstance(entry, dict) or "spdisplays_mtlgpufamilysupport" not in entry:
            continue  # no Metal support: not a device megagpu can use
        if entry.get("sppci_device_type", "spdisplays_gpu") != "spdisplays_gpu":
            continue
        builtin = entry.get("sppci_bus") == "spdisplays_builtin"
        vram = size_bytes(entry.get("spdisplays_vram")) or size_bytes(
            entry.get("spdisplays_vram_shared")
        )
        families.add(str(entry["spdisplays_mtlgpufamilysupport"]).removeprefix("spdisplays_"))
        devices.append(
            readings.Device(
                index=len(devices),
                name=str(entry.get("sppci_model") or entry.get("_name") or "Apple GPU"),
                memory_bytes=vram or (unified if builtin else None),
                fp64=False,
                fp16=True,
                kind="integrated" if builtin else "gpu",
            )
        )
    if not devices:
        return readings.Backend("metal", False, "system_profiler lists no Metal-capable GPU")
    return readings.Backend(
        "metal",
        True,
        driver_version=str(hardware.get("os_loader_version") or ""),
        api_version=",".join(sorted(families)),
        devices=devices,
    )


class Metal:
    """Reads the Mac's GPUs; elsewhere unavailable with the reason."""

    name = "metal"

    def __init__(self, platform: str = sys.platform, run: Runner = subprocess.run) -> None:
        self._platform, self._run = platform, run

    def read(self) -> readings.Backend:
        """One reading; never raises for a missing tool or odd output."""
        if self._platform != "darwin":
            return readings.Backend(self.name, False, "Metal exists only on macOS")
        start = time.perf_counter()
        try:
            done = self._run(
                list(COMMAND), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return readings.Backend(self.name, False, f"system_profiler failed: {e}")
        if done.returncode != 0:
            return readings.Backend(
                self.name, False, f"system_profiler exited {done.returncode}: {done.stderr[:200]}"
            )
        try:
            backend = parse(json.loads(done.stdout))
        except (ValueError, AttributeError, IndexError) as e:
            return readings.Backend(self.name, False, f"system_profiler output unreadable: {e}")
        backend.read_seconds = time.perf_counter() - start
        return backend
