"""`megagpu bench-workload`: real work, reported as the termination message (DESIGN 9.10).

It runs on the backend and device the pod was given.
The backend comes from ``MEGAGPU_BACKEND`` and the device from the environment the device plugin
sets (DESIGN 9.9): cuda counts from 0 among ``CUDA_VISIBLE_DEVICES`` when that is set, vulkan
takes the first of ``GGML_VK_VISIBLE_DEVICES`` (the device plugin counts it from 0 among the
render nodes it mounts), else the first of ``MEGAGPU_DEVICES``.
One device per run: a workload given several uses the first.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from megagpu.workload import cpu, cuda, kernels, vulkan

BACKENDS: dict[str, Callable[[kernels.Spec, int], kernels.Result]] = {
    "cpu": cpu.run,
    "cuda": cuda.run,
    "vulkan": vulkan.run,
}
WORK_KEY = "megagpu.io/work"
UNIT_KEY = "megagpu.io/work-unit"
"""The report's unit (``megagpu.kube.names.REPORT_UNIT``, the key the operator reads)."""
TERMINATION_LOG = Path("/dev/termination-log")
MESSAGE_LIMIT = 4096
"""Kubernetes keeps at most 4096 bytes of a termination message."""


class Outcome(dict[str, Any]):
    """The termination message: ``megagpu.io/work`` and details, or ``error`` without work."""

    @property
    def ok(self) -> bool:
        """Whether work was done."""
        return WORK_KEY in self


def _first(value: str) -> int | None:
    head = value.split(",")[0].strip()
    return int(head) if head.isdigit() else None


def device_of(backend: str, env: Mapping[str, str]) -> int:
    """The device index to open inside this process for ``backend``."""
    if backend == "cuda" and env.get("CUDA_VISIBLE_DEVICES", "").strip():
        return 0
    if backend == "vulkan":
        found = _first(env.get("GGML_VK_VISIBLE_DEVICES", ""))
        if found is not None:
            return found
    return _first(env.get("MEGAGPU_DEVICES", "")) or 0


def bench(spec: kernels.Spec, backend: str, env: Mapping[str, str]) -> Outcome:
    """Run ``spec`` on ``backend``; the outcome, never an exception for a backend's fault."""
    if backend not in BACKENDS:
        return Outcome(error=f"unknown backend {backend!r}; use one of {sorted(BACKENDS)}")
    device = device_of(backend, env)
    base = {"backend": backend, "deviceIndex": device, "kernel": spec.kernel}
    start = time.perf_counter()
    try:
        result = BACKENDS[backend](spec, device)
    except kernels.Unavailable as e:
        return Outcome(base, error=f"{backend} backend unavailable: {e}")
    except kernels.WrongResult as e:
        return Outcome(base, error=f"{backend} backend gave a wrong result: {e}")
    return Outcome(
        {
            WORK_KEY: round(result.work, 6),
            UNIT_KEY: spec.unit,
            "unit": spec.unit,
            **base,
            "device": result.device,
            "precision": result.precision,
            "size": spec.side,
            "seconds": round(result.seconds, 6),
            "totalSeconds": round(time.perf_counter() - start, 6),
            "rate": round(result.work / result.seconds, 6) if result.seconds > 0 else None,
            "checkError": float(f"{result.check_error:.3g}"),
        }
    )


def write_message(outcome: Outcome, path: Path) -> str | None:
    """Write the outcome as JSON to ``path``; a reason when it could not be written."""
    text = json.dumps(outcome, separators=(",", ":"))
    if len(text.encode()) > MESSAGE_LIMIT and "error" in outcome:
        text = json.dumps({**outcome, "error": outcome["error"][:1000]}, separators=(",", ":"))
    try:
        path.write_text(text)
    except OSError as e:
        return f"termination message not written to {path}: {e.strerror}"
    return None


def default_backend(env: Mapping[str, str] = os.environ) -> str:
    """``MEGAGPU_BACKEND``, else cpu."""
    return env.get("MEGAGPU_BACKEND", "").strip() or "cpu"
