"""Probe speed: scrape time with 8 simulated devices, and the probe's CPU at a 15 s interval.

1. In process: the collector over a simulated node with 8 GPUs (cuda and vulkan, DCGM families
   on), `generate_latest` timed 2,000 times (what one scrape costs the probe).
2. A real `megagpu probe --listen ... --interval 15` process (this machine's backends), scraped
   over HTTP every 15 s for five minutes: its CPU share over that time and the scrape latency.
The on-GPU figure (one full NVML read of an H100) comes from benchmarks/results/probe-h100.json.

Writes benchmarks/results/probe.json and probe.md. Run: python benchmarks/probe.py [--minutes M]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TICKS = os.sysconf("SC_CLK_TCK")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def yes(met: bool) -> str:
    return "yes" if met else "no"


def in_process(scrapes: int = 2000) -> dict[str, float]:
    from prometheus_client import CollectorRegistry, generate_latest

    from megagpu.core import model
    from megagpu.probe import collector, simulated

    node = model.Node(
        "bench-0", "h100", ("cuda", "vulkan"), 8, 81920, model.Benchmarks(52.0, 899.0, 3009.0)
    )
    registry = CollectorRegistry()
    registry.register(collector.ProbeCollector(simulated.readers([node])[0], dcgm=True))
    times = []
    for _ in range(scrapes):
        start = time.perf_counter()
        page = generate_latest(registry)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "scrapes": scrapes,
        "p50_ms": round(statistics.median(times), 3),
        "p99_ms": round(p99(times), 3),
        "page_bytes": len(page),
        "devices": 8,
        "dcgm": True,
    }


def process(minutes: float) -> dict[str, float]:
    from megagpu.devcluster import processes

    port = processes.free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "megagpu",
            "probe",
            "--listen",
            f"127.0.0.1:{port}",
            "--interval",
            "15",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        stat = Path(f"/proc/{proc.pid}/stat")

        def ticks() -> int:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])

        before, start, latencies = ticks(), time.monotonic(), []
        while time.monotonic() - start < minutes * 60:
            t = time.perf_counter()
            urllib.request.urlopen(url, timeout=5).read()
            latencies.append((time.perf_counter() - t) * 1000)
            time.sleep(max(0.0, 15 - (time.perf_counter() - t)))
        share = (ticks() - before) / TICKS / (time.monotonic() - start)
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "minutes": minutes,
        "interval_s": 15,
        "cpu_share": round(share, 5),
        "scrapes": len(latencies),
        "scrape_p50_ms": round(statistics.median(latencies), 2),
        "scrape_p99_ms": round(p99(latencies), 2),
        "scrape_max_ms": round(max(latencies), 2),
    }


def main() -> int:
    minutes = float(sys.argv[sys.argv.index("--minutes") + 1]) if "--minutes" in sys.argv else 5.0
    scrape = in_process()
    print("in process", scrape, flush=True)
    running = process(minutes)
    print("process", running, flush=True)
    h100 = json.loads((RESULTS / "probe-h100.json").read_text())
    result = {
        **common.header(),
        "scrape_8_simulated_devices": scrape,
        "probe_process": running,
        "h100_nvml_read_ms": {
            "p50": round(h100["nvml_read_ms"], 2),
            "p99": round(h100["nvml_read_ms_p99"], 2),
            "card": h100["card"],
            "date": h100["date"],
        },
        "goals": {"scrape_p99_ms": 20, "cpu_share": 0.01, "nvml_read_p99_ms": 5},
    }
    result["met"] = {
        "scrape_p99_ms": scrape["p99_ms"] < 20,
        "cpu_share": running["cpu_share"] < 0.01,
        "nvml_read_p99_ms": h100["nvml_read_ms_p99"] < 5,
    }
    (RESULTS / "probe.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [
        "# Probe speed",
        "",
        f"`{result['command']}` on {m['cpu']} ({m['cores']} cores), {result['date']}, commit "
        f"{result['commit']}.",
        "",
        "Goals on latency are judged on p99.",
        "",
        "| measure | result | goal | met |",
        "|---|---|---|---|",
        f"| one scrape, 8 simulated GPUs (cuda+vulkan, DCGM on), {scrape['scrapes']} scrapes "
        f"| p50 {scrape['p50_ms']} ms, p99 {scrape['p99_ms']} ms ({scrape['page_bytes']} bytes) "
        f"| p99 under 20 ms | {yes(result['met']['scrape_p99_ms'])} |",
        f"| probe process CPU at a 15 s interval over {running['minutes']:g} min, scraped every "
        f"15 s (this machine: cpu backend only) | {running['cpu_share'] * 100:.2f}% of one core "
        f"(scrape p50 {running['scrape_p50_ms']} ms, p99 {running['scrape_p99_ms']} ms) "
        f"| under 1% | {yes(result['met']['cpu_share'])} |",
        f"| one full NVML read of an {h100['card']} ({h100['date'][:10]}) | p50 "
        f"{h100['nvml_read_ms']:.1f} ms, p99 {h100['nvml_read_ms_p99']:.1f} ms "
        f"| p99 under 5 ms | {yes(result['met']['nvml_read_p99_ms'])} |",
    ]
    (RESULTS / "probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
