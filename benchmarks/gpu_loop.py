"""The learning loop on real hardware, without Kubernetes (issue 20).

The probe reads this machine (devices and its benchmark priors); the extender's Q-policy
(megagpu.core.qpolicy) places a stream of workloads on (backend, device) pairs; each runs for real
as `python -m megagpu bench-workload` in a subprocess with exactly the environment the device
plugin gives a pod (MEGAGPU_BACKEND, MEGAGPU_DEVICES; cuda: CUDA_VISIBLE_DEVICES,
NVIDIA_VISIBLE_DEVICES; vulkan: GGML_VK_VISIBLE_DEVICES); the policy learns from the work the
run reported over its wall time (what a pod's run time would be). CUDA devices are named by UUID
as the device plugin does; GGML_VK_VISIBLE_DEVICES is the host's Vulkan index (the plugin counts
from 0 among the render nodes it mounts into a container, which a process here does not have).
A pair that fails (backend unavailable) is learned as a failure and the loop goes on.

Classes are chosen so that their pairs differ by more than run-to-run noise: a 1024-cube GEMM
(the first H100 run) took the same wall time on both backends within 3% (start-up dominates), so
its "measured-fastest" pair was a coin toss.

Each GPU is its own device class (``h100-0``), so a pair is (backend, one device). The
measured-fastest pair of a class is the one with the highest median throughput over every run
of that class (the loop's and an audit of ``--audit`` runs per pair at the end).

Run on a GPU machine:  PYTHONPATH=. python3 benchmarks/gpu_loop.py [--placements 300]
Plot a result:         python benchmarks/gpu_loop.py --plot benchmarks/results/gpu-loop-h100.json
Without a GPU (lavapipe as the Vulkan device, small sizes): --small --lavapipe
Writes benchmarks/results/gpu-loop-<card>.json (and .png with matplotlib).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from megagpu.core import fleet, model, qpolicy  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VISIBILITY = (
    "MEGAGPU_BACKEND",
    "MEGAGPU_DEVICES",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "GGML_VK_VISIBLE_DEVICES",
)
WINDOW = 100
"""The last placements judged."""
GOAL_SHARE = 0.9


class Klass(NamedTuple):
    """A workload class: what the policy learns about, and the command's arguments."""

    name: str
    workload_type: str
    kernel: str
    precision: str
    size: int
    work: float
    compute_intensity: float


CLASSES = (
    Klass("gemm-4096", "training", "gemm", "fp32", 4096, 2000.0, 0.9),
    Klass("stream-64m", "inference", "stream", "fp32", 1 << 26, 400.0, 0.1),
)
SMALL = (
    Klass("gemm-256", "training", "gemm", "fp32", 256, 0.5, 0.9),
    Klass("stream-1m", "inference", "stream", "fp32", 1 << 20, 0.2, 0.1),
)


class Pair(NamedTuple):
    """A (backend, device) pair and the variables the device plugin would set for it."""

    backend: str
    device_class: str
    env: dict[str, str]


def slug(name: str) -> str:
    """A device class from a product name: ``NVIDIA H100 80GB HBM3`` -> ``h100``."""
    found = re.search(r"\b([A-Z]+\d+[A-Za-z]*)\b", name)
    return (found.group(1) if found else re.sub(r"[^a-z0-9]+", "-", name.lower())).lower()


def read_node(lavapipe: bool) -> tuple[list[model.Node], list[Pair], dict[str, Any]]:
    """The probe's view of this machine: one node per GPU, its pairs, and what was read."""
    from megagpu.probe import cpu, cuda, node, vulkan

    reading = node.read([cuda.Cuda(watch_xid=False), vulkan.Vulkan(), cpu.Cpu()])
    gpu = reading.backend("cuda")
    vk = reading.backend("vulkan")
    nvml = [d for d in gpu.devices if d.healthy] if gpu and gpu.available else []
    vk_devices = (
        [d for d in vk.devices if d.kind == "gpu" or lavapipe] if vk and vk.available else []
    )
    nodes, pairs, seen = [], [], {}
    for d in nvml:
        bench = cuda.benchmark(d.index)
        dclass = f"{slug(d.name)}-{d.index}"
        backends = ["cuda"]
        pairs.append(
            Pair(
                "cuda",
                dclass,
                {
                    "MEGAGPU_BACKEND": "cuda",
                    "MEGAGPU_DEVICES": str(d.index),
                    "CUDA_VISIBLE_DEVICES": d.uuid,
                    "NVIDIA_VISIBLE_DEVICES": d.uuid,
                },
            )
        )
        twin = next((v for v in vk_devices if vulkan.same_device(v, d)), None)
        if twin is not None:
            vk_devices.remove(twin)
            backends.append("vulkan")
            pairs.append(Pair("vulkan", dclass, vk_env(twin.index)))
        seen[dclass] = {"name": d.name, "uuid": d.uuid, "benchmarks": bench.__dict__}
        nodes.append(node_of(dclass, tuple(backends), bench, d.memory_bytes))
    for v in vk_devices:  # Vulkan-only devices (lavapipe with --lavapipe)
        bench = cpu.benchmark() if v.kind == "cpu" else None
        dclass = f"{slug(v.name)}-vk{v.index}"
        pairs.append(Pair("vulkan", dclass, vk_env(v.index)))
        seen[dclass] = {"name": v.name, "benchmarks": bench.__dict__ if bench else {}}
        nodes.append(node_of(dclass, ("vulkan",), bench, v.memory_bytes))
    info = {
        "cuda": {
            "available": bool(gpu and gpu.available),
            "reason": gpu.reason if gpu else "",
            "driver": gpu.driver_version if gpu else "",
        },
        "vulkan": {
            "available": bool(vk and vk.available),
            "reason": vk.reason if vk else "",
            "devices": [(d.index, d.name, d.kind) for d in (vk.devices if vk else [])],
        },
        "devices": seen,
    }
    return nodes, pairs, info


def vk_env(index: int) -> dict[str, str]:
    return {
        "MEGAGPU_BACKEND": "vulkan",
        "MEGAGPU_DEVICES": str(index),
        "GGML_VK_VISIBLE_DEVICES": str(index),
    }


def node_of(dclass: str, backends: tuple[str, ...], bench: Any, memory: int | None) -> model.Node:
    b = model.Benchmarks(
        fp32_tflops=(bench.fp32_tflops or 0.0) if bench else 0.0,
        fp16_tflops=(bench.fp16_tflops or bench.fp32_tflops or 0.0) if bench else 0.0,
        mem_gbps=(bench.mem_gbps or 0.0) if bench else 0.0,
    )
    return model.Node(dclass, dclass, backends, 1, (memory or 0) // 2**20, b)


def run_one(klass: Klass, pair: Pair, timeout_s: float) -> dict[str, Any]:
    """One real run with the pair's environment: wall time, reported work, the report."""
    env = {k: v for k, v in os.environ.items() if k not in VISIBILITY}
    env.update(pair.env)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(RESULTS.parents[1]), env.get("PYTHONPATH")])
    )
    with tempfile.NamedTemporaryFile(prefix="termination-") as log:
        cmd = [
            sys.executable,
            "-m",
            "megagpu",
            "bench-workload",
            "--kernel",
            klass.kernel,
            "--precision",
            klass.precision,
            "--size",
            str(klass.size),
            "--work",
            str(klass.work),
            "--termination-log",
            log.name,
        ]
        start = time.perf_counter()
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
            rc, err = done.returncode, done.stderr.strip()[-300:]
        except subprocess.TimeoutExpired:
            rc, err = -1, f"timed out after {timeout_s} s"
        wall = time.perf_counter() - start
        text = Path(log.name).read_text()
    report = json.loads(text) if text else {}
    work = report.get("megagpu.io/work")
    return {
        "rc": rc,
        "wall_s": wall,
        "work": work,
        "report": report,
        "error": "" if rc == 0 else (report.get("error") or err),
    }


def fastest(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Per class, the pair (``backend/device_class``) with the highest median throughput."""
    speeds: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        speed = r["work"] / r["wall_s"] if r["rc"] == 0 and r["work"] else 0.0
        speeds.setdefault(r["class"], {}).setdefault(r["pair"], []).append(speed)
    return {
        c: max(by_pair, key=lambda p: statistics.median(by_pair[p]))
        for c, by_pair in speeds.items()
    }


def summarize(placements: list[dict[str, Any]], audit: list[dict[str, Any]]) -> dict[str, Any]:
    best = fastest(placements + audit)
    last = placements[-WINDOW:]
    per_class: dict[str, Any] = {}
    for c in sorted({p["class"] for p in placements}):
        mine = [p for p in placements if p["class"] == c]
        recent = [p for p in last if p["class"] == c]
        pairs: dict[str, Any] = {}
        for r in (p for p in placements + audit if p["class"] == c):
            pairs.setdefault(r["pair"], []).append(r)
        per_class[c] = {
            "fastest": best[c],
            "placements": len(mine),
            "last_window": len(recent),
            "share_on_fastest_last_window": (
                sum(p["pair"] == best[c] for p in recent) / len(recent) if recent else None
            ),
            "pairs": {
                pair: {
                    "runs": len(rs),
                    "failed": sum(r["rc"] != 0 for r in rs),
                    "throughput_p50": statistics.median(speed(r) for r in rs),
                    "wall_s_p50": statistics.median(r["wall_s"] for r in rs),
                    "wall_s_p99": float(np.percentile([r["wall_s"] for r in rs], 99)),
                    "compute_rate_p50": statistics.median(
                        r["report"].get("rate") or 0.0 for r in rs
                    ),
                    "errors": sorted({r["error"] for r in rs if r["error"]})[:3],
                }
                for pair, rs in sorted(pairs.items())
            },
        }
    shares = [v["share_on_fastest_last_window"] for v in per_class.values()]
    return {
        "per_class": per_class,
        "goal": f"each class on its measured-fastest pair in >= {GOAL_SHARE:.0%} of the last "
        f"{WINDOW} placements",
        "goal_met": bool(shares) and all(s is not None and s >= GOAL_SHARE for s in shares),
    }


def speed(r: dict[str, Any]) -> float:
    return r["work"] / r["wall_s"] if r["rc"] == 0 and r["work"] else 0.0


def step(
    policy: qpolicy.QPolicy,
    f: fleet.Fleet,
    klass: Klass,
    i: int,
    rng: random.Random,
    runner: Callable[[Klass, tuple[str, str]], dict[str, Any]],
) -> tuple[Any, str, dict[str, Any]]:
    """One placement: the policy chooses, ``runner`` runs it, the policy learns the outcome."""
    workload = model.Workload(
        uid=f"{klass.name}-{i}",
        workload_type=klass.workload_type,
        model=klass.name,
        gpus=1,
        precision=klass.precision,
        backends=("cuda", "vulkan"),
        compute_intensity=klass.compute_intensity,
        work=klass.work,
    )
    free = np.ones(len(f.nodes), dtype=np.int64)
    view = fleet.View(f, f.feasible_rows(workload, free), free)
    choice = policy.choose(workload, view, rng)
    backend, dnode = f.row_backend[int(choice.row)], view.node_of(int(choice.row))
    run = runner(klass, (backend, dnode.device_class))
    policy.observe(
        model.Outcome(
            uid=workload.uid,
            workload=workload,
            node=dnode.name,
            backend=backend,
            device_class=dnode.device_class,
            duration_s=run["wall_s"],
            succeeded=run["rc"] == 0,
            work=run["work"] if run["work"] else None,
            work_source="reported" if run["work"] else "none",
        )
    )
    return choice, f"{backend}/{dnode.device_class}", run


def replay(path: Path, seeds: int, placements: int) -> dict[str, Any]:
    """The loop again per seed, offline: each run's wall time drawn from those measured.

    A simulation from a hardware result (no run is real): how often the goal holds over seeds.
    """
    result = json.loads(path.read_text())
    measured: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in result["placements"] + result["audit"]:
        measured.setdefault((r["class"], r["pair"]), []).append(r)
    nodes = []
    for dclass, device in result["node"]["devices"].items():
        backends = tuple(sorted({p.split("/")[0] for _, p in measured if p.endswith(dclass)}))
        bench = argparse.Namespace(**device["benchmarks"])
        nodes.append(node_of(dclass, backends, bench, None))
    f = fleet.Fleet.build(nodes)
    classes = [Klass(**k) for k in result["classes"]]
    best = {c: v["fastest"] for c, v in result["summary"]["per_class"].items()}
    shares = []
    for seed in range(seeds):
        policy = qpolicy.QPolicy(qpolicy.Params(), rng=random.Random(seed))
        policy.know(f)
        rng, draw = random.Random(seed), random.Random(10_000 + seed)

        def measured_run(k: Klass, key: tuple[str, str], draw: random.Random = draw) -> Any:
            return draw.choice(measured[(k.name, "/".join(key))])

        placed = []
        for i in range(placements):
            klass = classes[i % len(classes)]
            placed.append((klass.name, step(policy, f, klass, i, rng, measured_run)[1]))
        placed = placed[-WINDOW:]
        shares.append(
            min(
                sum(p == best[c] for cc, p in placed if cc == c) / sum(cc == c for cc, _ in placed)
                for c in best
            )
        )
    return {
        "from": str(path),
        "seeds": seeds,
        "placements": placements,
        "goal_met_seeds": sum(s >= GOAL_SHARE for s in shares),
        "worst_class_share_p50": statistics.median(shares),
        "worst_class_share_min": min(shares),
        "seed_0_worst_class_share": shares[0],
    }


def loop(args: argparse.Namespace) -> int:
    header = common.header()
    nodes, pairs, info = read_node(args.lavapipe)
    if not pairs:
        print(f"no GPU pair to place on: {json.dumps(info)}", file=sys.stderr)
        return 1
    f = fleet.Fleet.build(nodes)
    policy = qpolicy.QPolicy(qpolicy.Params(), rng=random.Random(args.seed))
    policy.know(f)
    rng = random.Random(args.seed)
    classes = SMALL if args.small else CLASSES
    by_key = {(p.backend, p.device_class): p for p in pairs}
    placements: list[dict[str, Any]] = []
    start = time.monotonic()
    audit: list[dict[str, Any]] = []
    card = slug(next(iter(info["devices"].values()))["name"]) if info["devices"] else "none"
    out = args.out / f"gpu-loop-{card}.json"

    def save(complete: bool) -> dict[str, Any]:
        """The result so far, written over ``out`` (atomically): a cut-off run leaves its part."""
        result = {
            **header,
            "card": next(iter(info["devices"].values()))["name"] if info["devices"] else "none",
            "complete": complete,
            "node": info,
            "classes": [k._asdict() for k in classes],
            "params": dataclasses.asdict(policy.params),
            "duration_s": round(time.monotonic() - start, 1),
            "summary": summarize(placements, audit) if placements else {},
            "placements": [
                {k: v for k, v in p.items() if k != "report"}
                | {"compute_s": p["report"].get("seconds"), "device": p["report"].get("device")}
                for p in placements
            ],
            "audit": [{k: v for k, v in a.items() if k != "report"} for a in audit],
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".part")
        part.write_text(json.dumps(result, indent=1) + "\n")
        part.replace(out)
        return result

    for i in range(args.placements):
        if time.monotonic() - start > args.budget_s:
            print(f"time budget of {args.budget_s} s spent after {i} placements", flush=True)
            break
        klass = classes[i % len(classes)]
        choice, pair, run = step(
            policy, f, klass, i, rng, lambda k, key: run_one(k, by_key[key], args.timeout_s)
        )
        placements.append(
            {
                "i": i,
                "class": klass.name,
                "pair": pair,
                "mode": choice.mode,
                "reward": policy.recent_rewards[-1],
                "epsilon": policy.epsilon,
                **run,
            }
        )
        print(
            f"{i:4d} {klass.name:11s} {pair:18s} {choice.mode:8s} "
            f"wall {run['wall_s']:.2f} s work {run['work']} rc {run['rc']} "
            f"reward {policy.recent_rewards[-1]:+.2f} {run['error'][:120]}",
            flush=True,
        )
        if (i + 1) % args.checkpoint == 0:
            save(False)
    for klass in classes:
        for pair in pairs:
            for _ in range(args.audit):
                audit.append(
                    {
                        "class": klass.name,
                        "pair": f"{pair.backend}/{pair.device_class}",
                        **run_one(klass, pair, args.timeout_s),
                    }
                )
                save(False)
    result = save(True)
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {out}")
    return 0 if result["summary"]["goal_met"] and len(placements) >= args.placements else 2


def plot(path: Path) -> Path:
    """Share on the measured-fastest pair per class (rolling 25) and reward over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = json.loads(path.read_text())
    placements = result["placements"]
    best = {c: v["fastest"] for c, v in result["summary"]["per_class"].items()}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for c, pair in best.items():
        xs = [p["i"] for p in placements if p["class"] == c]
        hits = np.array([p["pair"] == pair for p in placements if p["class"] == c], dtype=float)
        w = max(1, min(25, len(hits)))
        rolling = np.convolve(hits, np.ones(w) / w, mode="valid")
        top.plot(xs[w - 1 :], rolling, label=f"{c} (fastest: {pair})")
    top.axhline(GOAL_SHARE, color="grey", linestyle=":", label=f"{GOAL_SHARE:.0%}")
    top.set_ylabel("share on measured-fastest\n(last 25 of the class)")
    top.set_ylim(0, 1.05)
    top.legend(fontsize=8, loc="lower right")
    rewards = np.array([p["reward"] for p in placements])
    bottom.plot([p["i"] for p in placements], rewards, ".", markersize=3, alpha=0.5)
    if len(rewards) >= 25:
        bottom.plot(
            range(24, len(rewards)),
            np.convolve(rewards, np.ones(25) / 25, "valid"),
            label="rolling mean (25)",
        )
        bottom.legend(fontsize=8)
    bottom.set_ylabel("reward (log speed vs best known)")
    bottom.set_xlabel("placement")
    fig.suptitle(f"gpu_loop on {result['card']} ({result['date'][:10]})")
    fig.tight_layout()
    out = path.with_suffix(".png")
    fig.savefig(out, dpi=110)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--placements", type=int, default=300)
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop placing after this")
    parser.add_argument("--audit", type=int, default=3, help="runs per (class, pair) at the end")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint", type=int, default=10, help="write the result so far every N placements"
    )
    parser.add_argument("--small", action="store_true", help="small sizes (no GPU needed)")
    parser.add_argument("--lavapipe", action="store_true", help="count CPU Vulkan devices")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, help="only plot this result file")
    parser.add_argument(
        "--replay", type=Path, help="only replay this result offline over --seeds (simulation)"
    )
    parser.add_argument("--seeds", type=int, default=100, help="with --replay")
    args = parser.parse_args()
    if args.replay:
        found = replay(args.replay, args.seeds, args.placements)
        print(json.dumps(found, indent=1))
        return 0
    if args.plot:
        print(f"wrote {plot(args.plot)}")
        return 0
    return loop(args)


if __name__ == "__main__":
    sys.exit(main())
