"""Dashboard speed in a real terminal (tmux): first frame, key-press redraw, idle CPU.

Key presses are timed on a synthetic cluster of 2,000 GpuWorkloads and 200 nodes (1,600
GPUs): from sending the key to the first change of the captured screen (text and styles; tmux's
escape-time set to 0). The first frame is
timed from spawning the process to the first screen with data, for the dev cluster (when it
is up), the simulation and the synthetic cluster. Idle CPU is the process's user+system time
over 10 s with nothing changing.

Writes benchmarks/results/tui.json and tui.md. Run: python benchmarks/tui.py
(`--serve` runs the dashboard on the synthetic cluster; the benchmark starts it itself).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORKLOADS, NODES, DEVICES = 2000, 200, 8
KEYS = (
    ("2", "workloads view"),
    ("s", "sort"),
    ("Down", "cursor"),
    ("S", "reverse sort"),
    ("3", "nodes view"),
    ("1", "dashboard"),
    ("/ h", "filter (open the prompt, type h)"),
    ("Escape", "close the prompt"),
    ("Escape", "clear the filter"),
)
REPEATS = 5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def synthetic_objects() -> Any:
    """2,000 GpuWorkloads in every phase, 200 Nodes with 8-GPU GpuNodes, a policy status."""
    from megagpu.tui.source import Objects

    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600))
    kinds = ("h100", "a100", "v100", "t4", "mi210")
    nodes, gpunodes = [], []
    for i in range(NODES):
        name, kind = f"node-{i:03d}", kinds[i % len(kinds)]
        nodes.append(
            {
                "metadata": {"name": name, "labels": {"megagpu.io/gpu.product": kind}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }
        )
        devices = [
            {
                "index": d,
                "uuid": f"U-{i}-{d}",
                "name": kind.upper(),
                "memoryMiB": 81920,
                "usedMiB": (i * 7 + d * 13) % 81920,
                "utilization": ((i + d) % 10) / 10,
                "temperatureC": 40 + (i + d) % 50,
                "healthy": True,
            }
            for d in range(DEVICES)
        ]
        gpunodes.append(
            {
                "metadata": {"name": name},
                "status": {
                    "summary": {"backends": "cuda", "devices": DEVICES, "healthy": DEVICES},
                    "backends": {"cuda": {"available": True, "healthy": True, "devices": devices}},
                    "lastProbeTime": stamp,
                },
            }
        )
    phases = ("Pending", "Scheduling", "Running", "Succeeded", "Failed")
    workloads = []
    for i in range(WORKLOADS):
        phase = phases[i % len(phases)]
        status: dict[str, Any] = {"phase": phase}
        if phase in ("Running", "Succeeded", "Failed"):
            status |= {
                "node": f"node-{i % NODES:03d}",
                "backend": "cuda",
                "startedAt": stamp,
                "decision": {"mode": ("exploit", "explore")[i % 2], "score": 10},
            }
        if phase == "Succeeded":
            status |= {"reward": -((i % 7) / 10), "durationSeconds": 100 + i % 300}
        workloads.append(
            {
                "metadata": {
                    "name": f"workload-{i:04d}",
                    "namespace": f"team-{i % 9}",
                    "creationTimestamp": stamp,
                },
                "spec": {"workloadType": "training", "model": f"model-{i % 40}", "gpus": 1 + i % 4},
                "status": status,
            }
        )
    policy = {
        "metadata": {"name": "default"},
        "spec": {"mode": "active"},
        "status": {
            "phase": "Exploiting",
            "version": 4000,
            "decisions": 2000,
            "updates": 1900,
            "epsilon": 0.05,
            "rewardEma": -0.12,
            "recentRewards": [-(i % 7) / 10 for i in range(100)],
        },
    }
    return Objects(now, workloads, gpunodes, nodes, policy, [])


class SyntheticSource:
    """A large cluster that does not change (so idle is idle)."""

    title, namespace = "synthetic 2000x200", "all"

    def __init__(self) -> None:
        self._objects = synthetic_objects()

    def start(self) -> None:
        """Nothing to follow."""

    def stop(self) -> None:
        """Nothing to stop."""

    def version(self) -> int:
        return 1

    def objects(self) -> Any:
        return self._objects

    def health(self) -> Any:
        from megagpu.tui.source import Health

        return Health("connected")


class Terminal:
    """A tmux session on a private server."""

    def __init__(self, command: list[str], size: tuple[int, int] = (160, 45)) -> None:
        self.socket = f"megagpu-bench-{uuid.uuid4().hex[:8]}"
        self.started = time.perf_counter()
        self.tmux(
            "new-session",
            "-d",
            "-s",
            "b",
            "-x",
            str(size[0]),
            "-y",
            str(size[1]),
            "env",
            "-u",
            "COLUMNS",
            "-u",
            "LINES",
            *command,
        )

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-e", "-p", "-t", "b")  # -e: styles too (the cursor)

    def wait(self, predicate, timeout_s: float = 30) -> float:
        """Seconds since start until ``predicate(screen)``."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if predicate(self.screen()):
                return time.perf_counter() - self.started
            time.sleep(0.005)
        raise TimeoutError(self.screen())

    def settle(self, quiet_s: float = 0.4, limit_s: float = 10.0) -> str:
        last, since = self.screen(), time.perf_counter()
        deadline = since + limit_s
        while time.perf_counter() - since < quiet_s and time.perf_counter() < deadline:
            time.sleep(0.02)
            now = self.screen()
            if now != last:
                last, since = now, time.perf_counter()
        return last

    def key_ms(self, keys: str) -> float:
        before = self.settle()
        start = time.perf_counter()
        for key in keys.split():
            self.tmux("send-keys", "-t", "b", key)
        while self.screen() == before:
            if time.perf_counter() - start > 10:
                raise TimeoutError(f"no redraw after {keys}")
        return (time.perf_counter() - start) * 1000

    def cpu_share(self, seconds: float = 10.0) -> float:
        pid = int(self.tmux("display", "-p", "-t", "b", "#{pane_pid}").strip())

        def ticks() -> int:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])

        before, start = ticks(), time.perf_counter()
        time.sleep(seconds)
        return (ticks() - before) / CLOCK_TICKS / (time.perf_counter() - start)

    def close(self) -> None:
        self.tmux("kill-server")


def tui(*args: str) -> list[str]:
    return [sys.executable, "-m", "megagpu", "tui", *args]


def first_frame(command: list[str], ready) -> tuple[float, float]:
    """(seconds to the first frame with data, CPU share over the next 10 s)."""
    term = Terminal(command)
    try:
        seconds = term.wait(ready)
        term.settle(2.0, limit_s=3.0)
        return seconds, term.cpu_share()
    finally:
        term.close()


def main() -> int:
    if "--serve" in sys.argv:
        os.environ.setdefault("ESCDELAY", "25")  # as `megagpu tui` does (megagpu/cli/tools.py)
        from megagpu.tui.app import MegagpuApp

        MegagpuApp(SyntheticSource()).run()
        return 0
    from megagpu.devcluster import cluster

    kubeconfig = cluster.paths().kubeconfig
    sources = {
        "synthetic 2000 workloads x 200 nodes": (
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            lambda s: "node-000" in s and "LIVE" in s,
        ),
        "simulation (dev.yaml, 400 workloads; playing, not idle)": (
            tui("--source", "sim"),
            lambda s: "a100-0" in s and "LIVE" in s,
        ),
    }
    if (
        kubeconfig.exists()
        and subprocess.run(
            [sys.executable, "-m", "megagpu", "dev", "status"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        sources["dev cluster (13 nodes)"] = (
            tui("--kubeconfig", str(kubeconfig)),
            lambda s: "simulated" in s and "connected" in s,
        )
    frames: dict[str, Any] = {}
    for name, (command, ready) in sources.items():
        runs = [first_frame(command, ready) for _ in range(3)]
        frames[name] = {
            "first_frame_s": [round(r[0], 3) for r in runs],
            "idle_cpu_share": [round(r[1], 4) for r in runs],
        }
        print(name, frames[name], flush=True)
    term = Terminal(sources["synthetic 2000 workloads x 200 nodes"][0])
    keys: dict[str, list[float]] = {label: [] for _, label in KEYS}
    try:
        term.wait(lambda s: "node-000" in s)
        for _ in range(REPEATS):
            for key, label in KEYS:
                keys[label].append(round(term.key_ms(key), 1))
    finally:
        term.close()
    redraw = {
        label: {"p50_ms": statistics.median(v), "max_ms": max(v), "runs": v}
        for label, v in keys.items()
    }
    print(json.dumps(redraw), flush=True)
    result = {
        **common.header(),
        "first_frame_and_idle": frames,
        "key_redraw": redraw,
        "goals": {"first_frame_s": 1.5, "key_redraw_ms": 100, "idle_cpu_share": 0.2},
        "method": __doc__.split("\n\n")[1].replace("\n", " "),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tui.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# TUI speed",
        "",
        f"`{result['command']}` on {result['machine']['cpu']} ({result['machine']['cores']} "
        f"cores), {result['date']}, commit {result['commit']}. {result['method']}",
        "",
        "| source | first frame (s), 3 runs | CPU share over 10 s, 3 runs |",
        "|---|---|---|",
        *[f"| {n} | {v['first_frame_s']} | {v['idle_cpu_share']} |" for n, v in frames.items()],
        "",
        f"Key press to redraw on 2,000 workloads x 200 nodes, {REPEATS} runs each:",
        "",
        "| key | p50 ms | max ms |",
        "|---|---|---|",
        *[f"| {k} | {v['p50_ms']} | {v['max_ms']} |" for k, v in redraw.items()],
        "",
        "Goals: first frame 1.5 s, key redraw 100 ms, idle under 20% of a core.",
    ]
    (RESULTS / "tui.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
