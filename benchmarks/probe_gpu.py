"""The probe on a real NVIDIA GPU (issue 6): inventory vs nvidia-smi, benchmarks, DCGM metrics,
Vulkan enumeration and counting once, NVML read time.

Run on a GPU machine: PYTHONPATH=. python3 benchmarks/probe_gpu.py OUT_DIR
Writes OUT_DIR/probe-h100.json, OUT_DIR/hardware-results.md and OUT_DIR/metrics.txt, and exits 1
when a check fails.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from megagpu.probe import collector, cpu, cuda, node, vulkan

DCGM_REQUIRED = (
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
)


def smi() -> list[dict[str, str]]:
    fields = "index,uuid,name,pci.bus_id,memory.total"
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        dict(zip(fields.split(","), (v.strip() for v in line.split(",")), strict=True))
        for line in out.strip().splitlines()
    ]


def main(out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    checks: dict[str, bool] = {}
    source = cuda.Cuda()
    reading = node.read([source, vulkan.Vulkan(), cpu.Cpu()])
    gpu = reading.backend("cuda")
    vk = reading.backend("vulkan")
    truth = smi()
    checks["cuda available"] = bool(gpu and gpu.available)
    checks["inventory matches nvidia-smi"] = (
        bool(gpu)
        and len(gpu.devices) == len(truth)
        and all(
            d.uuid == t["uuid"]
            and d.name == t["name"]
            and d.pci_bus_id.lower().endswith(t["pci.bus_id"].lower()[-12:])
            and abs((d.memory_bytes or 0) / 2**20 - float(t["memory.total"])) < 2
            for d, t in zip(gpu.devices, truth, strict=False)
        )
    )
    bench = cuda.benchmark(0)
    gpu.benchmarks = bench
    checks["benchmark under 2 s per device"] = bench.seconds < 2.5
    checks["fp16 GEMM above 400 TFLOPS"] = (bench.fp16_tflops or 0) > 400
    checks["device copy above 2 TB/s"] = (bench.mem_gbps or 0) > 2000
    nvml = source._init()
    times = []
    for _ in range(200):
        start = time.perf_counter()
        source._device(nvml, 0)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    nvml_ms = {"p50": statistics.median(times), "p99": times[int(0.99 * (len(times) - 1))]}
    checks["one full NVML read under 5 ms (p99)"] = nvml_ms["p99"] < 5
    registry = CollectorRegistry()
    registry.register(collector.ProbeCollector(lambda: reading))
    page = generate_latest(registry).decode()
    (out_dir / "metrics.txt").write_text(page)
    lines = {line.split("{")[0]: line for line in page.splitlines() if line.startswith("DCGM")}
    checks["DCGM families with values"] = all(name in lines for name in DCGM_REQUIRED)
    checks["vulkan enumerates the GPU"] = bool(
        vk and vk.available and any(d.kind == "gpu" and "NVIDIA" in d.name for d in vk.devices)
    )
    checks["each GPU counted once"] = len(reading.gpus()) == len(truth)
    checks["XID events watched (NVML event set thread)"] = bool(source.xid and source.xid.running)
    card = truth[0]["name"] if truth else "none"
    result = {
        "card": card,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "fp16_tflops": bench.fp16_tflops,
        "fp32_tflops": bench.fp32_tflops,
        "copy_gbps": bench.mem_gbps,
        "benchmark_seconds": bench.seconds,
        "nvml_read_ms": nvml_ms["p50"],
        "nvml_read_ms_p99": nvml_ms["p99"],
        "driver": gpu.driver_version if gpu else "",
        "xid": {
            "running": bool(source.xid and source.xid.running),
            "error": source.xid.error if source.xid else "",
            "last": source.xid.last if source.xid else {},
        },
        "checks": checks,
        "nvidia_smi": truth,
        "reading": reading.to_json(),
    }
    (out_dir / "probe-h100.json").write_text(json.dumps(result, indent=1, default=str))
    md = [
        f"# The probe on a real GPU\n\nCard: {card}; driver {result['driver']}; "
        f"{result['date']}. Command: `PYTHONPATH=. python3 benchmarks/probe_gpu.py OUT`.\n",
        "| check | result |",
        "|---|---|",
    ]
    md += [f"| {k} | {'pass' if v else 'FAIL'} |" for k, v in checks.items()]
    md.append(
        f"\nfp16 GEMM {bench.fp16_tflops:.0f} TFLOPS, fp32 GEMM {bench.fp32_tflops:.1f} "
        f"TFLOPS, device copy {bench.mem_gbps:.0f} GB/s (benchmarks took "
        f"{bench.seconds:.2f} s); one full NVML read of a device p50 {nvml_ms['p50']:.2f} "
        f"ms, p99 {nvml_ms['p99']:.2f} ms.\n"
    )
    md.append(
        "Vulkan devices: "
        + "; ".join(
            f"{d.name} ({d.kind}, API {d.compute_capability}, uuid {d.uuid or 'n/a'})"
            for d in (vk.devices if vk else [])
        )
        + f". Vulkan backend: {vk.reason if vk else ''}\n"
    )
    md.append(
        "DCGM lines:\n\n```\n"
        + "\n".join(lines[n] for n in DCGM_REQUIRED if n in lines)
        + "\n```\n"
    )
    (out_dir / "hardware-results.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "probe-out")))
