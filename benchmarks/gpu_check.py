"""Real work on a real GPU (issue 20): the same GEMM through cupy and the Vulkan shader, every
kernel and precision once, and the faults that must become reasons.

Each case is `python -m megagpu bench-workload` in a subprocess with the device plugin's
environment for device 0 (as benchmarks/gpu_loop.py runs it); rates are the command's own
(work over the time of its passes, after set-up and the numpy check), set against the datasheet.

Run on a GPU machine: PYTHONPATH=. python3 benchmarks/gpu_check.py [--out DIR] [--small]
Writes DIR/gpu-workload-<card>.json (default benchmarks/results) and prints a Markdown table;
exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, gpu_loop  # noqa: E402

DATASHEET = {
    # NVIDIA H100 SXM5 datasheet (dense): fp32 67 TFLOPS; fp64 67 on tensor cores (which
    # cuBLAS DGEMM uses; 34 without); fp16 tensor 989 TFLOPS; HBM3 3.35 TB/s.
    "H100 80GB HBM3": {"fp32": 67.0, "fp64": 67.0, "fp16": 989.0, "GB/s": 3350.0},
}
GEMM_SIDE = 8192
"""The GEMM run through both cupy and the Vulkan shader."""
CASES = (
    # (backend, kernel, precision, size, work)
    ("cuda", "gemm", "fp32", 8192, 22000.0),
    ("vulkan", "gemm", "fp32", 8192, 22000.0),
    ("cuda", "gemm", "fp32", 4096, 5500.0),
    ("vulkan", "gemm", "fp32", 4096, 5500.0),
    ("cuda", "gemm", "fp16", 8192, 220000.0),
    ("cuda", "gemm", "fp64", 4096, 5500.0),
    ("cuda", "stream", "fp32", 1 << 28, 640.0),
    ("vulkan", "stream", "fp32", 1 << 28, 640.0),
    ("cuda", "attention", "fp16", 4096, 27000.0),
    ("cpu", "gemm", "fp32", 2048, 500.0),
)
SMALL = (
    ("vulkan", "gemm", "fp32", 256, 1.0),
    ("vulkan", "stream", "fp32", 1 << 20, 0.5),
    ("cpu", "gemm", "fp32", 256, 1.0),
    ("cpu", "attention", "fp32", 128, 1.0),
)
FAULTS = (
    # (name, backend, kernel, extra environment): each must exit 1 with a reason, no traceback
    ("shaders missing", "vulkan", "gemm", {"MEGAGPU_SPIRV_DIR": "/nonexistent"}),
    ("no CUDA device visible", "cuda", "gemm", {"CUDA_VISIBLE_DEVICES": ""}),
    ("no such Vulkan device", "vulkan", "gemm", {"GGML_VK_VISIBLE_DEVICES": "9"}),
    ("kernel the Vulkan backend lacks", "vulkan", "attention", {}),
)


def bench(
    backend: str,
    kernel: str,
    precision: str,
    size: int,
    work: float,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    pair = gpu_loop.vk_env(0) if backend == "vulkan" else {"MEGAGPU_BACKEND": backend}
    if backend == "cuda":
        pair = {"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": "0", "CUDA_VISIBLE_DEVICES": "0"}
    env = {k: v for k, v in os.environ.items() if k not in gpu_loop.VISIBILITY}
    env.update(pair)
    env.update(extra or {})
    with tempfile.NamedTemporaryFile(prefix="termination-") as log:
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "megagpu",
                "bench-workload",
                "--kernel",
                kernel,
                "--precision",
                precision,
                "--size",
                str(size),
                "--work",
                str(work),
                "--termination-log",
                log.name,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        wall = time.perf_counter() - start
        text = Path(log.name).read_text()
    return {
        "backend": backend,
        "kernel": kernel,
        "precision": precision,
        "size": size,
        "rc": done.returncode,
        "wall_s": round(wall, 3),
        "report": json.loads(text or "{}"),
        "stderr": done.stderr.strip()[-400:],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=gpu_loop.RESULTS)
    parser.add_argument("--small", action="store_true", help="small sizes (no GPU needed)")
    args = parser.parse_args()
    header = common.header()
    smi = (
        subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        )
        if not args.small
        else None
    )
    card, driver = (
        smi.stdout.strip().splitlines()[0].split(", ")
        if smi and smi.returncode == 0
        else ("none", "")
    )
    sheet = next((v for k, v in DATASHEET.items() if k in card), {})
    cases = []
    for case in SMALL if args.small else CASES:
        r = bench(*case)
        rep = r["report"]
        rate = rep.get("rate")
        peak = sheet.get("GB/s" if case[1] == "stream" else case[2])
        r["rate"] = rate
        r["unit"] = rep.get("unit")
        r["share_of_datasheet"] = (
            round(rate / (peak if case[1] == "stream" else peak * 1000), 4)
            if rate and peak and case[1] != "attention"
            else None
        )
        cases.append(r)
        shown = (
            f"{rate / 1000:.2f} TFLOPS"
            if rate and rep.get("unit") == "GFLOP"
            else (f"{rate:.0f} GB/s" if rate else rep.get("error"))
        )
        print(
            f"{case[0]:6s} {case[1]:9s} {case[2]} n={case[3]}: rc {r['rc']} {shown} "
            f"check {rep.get('checkError')} on {rep.get('device')} ({r['wall_s']} s)",
            flush=True,
        )
    faults = []
    for name, backend, kernel, extra in [] if args.small else FAULTS:
        r = bench(backend, kernel, "fp32", 256, 1.0, extra)
        r["name"] = name
        r["ok"] = r["rc"] == 1 and "Traceback" not in r["stderr"] and bool(r["report"].get("error"))
        faults.append(r)
        print(f"fault {name}: rc {r['rc']}: {r['stderr'][:200]}", flush=True)
    gemm = [
        c
        for c in cases
        if c["kernel"] == "gemm"
        and c["precision"] == "fp32"
        and c["backend"] in ("cuda", "vulkan")
        and c["size"] == GEMM_SIDE
    ]
    checks = {
        "every case ran and matched numpy": all(c["rc"] == 0 for c in cases),
        "fp32 GEMM through cupy and Vulkan, both correct": args.small
        or ({c["backend"] for c in gemm if c["rc"] == 0} == {"cuda", "vulkan"}),
        "faults give a reason, exit 1, no traceback": all(f["ok"] for f in faults),
    }
    result = {
        **header,
        "card": card,
        "driver": driver,
        "datasheet": sheet,
        "checks": checks,
        "cases": cases,
        "faults": faults,
    }
    out = args.out / f"gpu-workload-{gpu_loop.slug(card)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name, ok in checks.items():
        print(f"check {name}: {'pass' if ok else 'FAIL'}")
    print(f"wrote {out}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
