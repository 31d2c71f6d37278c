"""Extender speed (issue 4): per-verb latency and throughput on one core, and kube-scheduler's
pods per second with the extender over without it on a real control plane.

The extender (snapshot mode) runs on core 0; a Go load generator (benchmarks/extender_load, Go's
net/http and encoding/json as in kube-scheduler) on core 1 sends what kube-scheduler sends.
Writes benchmarks/results/extender.json and extender.md. Run: python benchmarks/extender_load.py
(--help: shorter runs). Goals: p99 of filter + prioritize < 2 ms at 1,000 nodes and < 10 ms at
5,000; >= 1,000 requests/s per core at 1,000 nodes; pods/s with the extender >= 0.8 x without.

Latency is measured with predictions and waiting on (issue 18), in two states, and without
them. In both, the extender starts from a Q-state that has learned the benchmark pod's class on
every device kind (so every candidate has a predicted run time), the pod declares its size, and
every device of the fastest kind (H100) is held by a job, so that each filter assesses waiting
over busy nodes before it answers. ``places``: those jobs have 20 minutes left, so waiting does
not pay: filter keeps the other 800 nodes and prioritize predicts over them. ``waits``: 10
minutes, so it pays (20 minutes to finish there against 25 on an A100): filter keeps the pod
pending for an H100, every node failing with the reason (and, as kube-scheduler does, the
cycle sends no prioritize). ``plain``: no state, size or busy node (the request path before
predictions).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIZES = (100, 1000, 5000)
REQUESTS = 600
CONCURRENCY = 8
"""Requests in flight in the throughput phase (kube-scheduler binds in parallel, but filters
and prioritizes one pod at a time: the latency phase is the realistic one)."""
RATE_SECONDS = 5.0
LATENCY_ROUNDS = 5
"""Each size is measured this many times (a row each): the machine is shared and noisy."""


def cluster_spec(nodes: int, path: Path) -> None:
    from megagpu.io import devices

    kinds = ("h100", "a100", "v100", "t4", "mi210")
    groups = [devices.group(f"{k}", nodes // len(kinds), k, 8) for k in kinds]
    path.write_text(yaml.safe_dump({"nodes": groups}))


RATES = {
    ("cuda", "h100"): 26.5332,
    ("vulkan", "h100"): 14.5932,
    ("cuda", "a100"): 10.6656,
    ("cuda", "v100"): 4.3948,
    ("cuda", "t4"): 2.0685,
    ("vulkan", "mi210"): 3.7698,
}
"""Work units/s of the benchmark pod's class (resnet-50-bs64, 1 GPU) per (backend, device), as
in the shipped throughput table: what the seeded Q-state has learned."""
POD_WORK = 26.5332 * 600
"""The benchmark pod's declared size: 10 minutes on an H100."""
BUSY_WORK = {"places": 26.5332 * 1200, "waits": 26.5332 * 600}
"""Size of the jobs that hold the H100s, per state: 20 minutes there (too long to wait for),
10 minutes (worth the wait)."""
STATES = ("places", "waits", "plain")


def real_pod(uid: str, work: float | None = None) -> dict:
    """A pod as kube-scheduler serializes it (about 2 KB), with megagpu's annotations."""
    return {
        "metadata": {
            "name": f"w-{uid}",
            "namespace": "ml",
            "uid": uid,
            "labels": {"megagpu.io/workload": f"w-{uid}", "app": "bench"},
            "annotations": {
                "megagpu.io/workload-type": "training",
                "megagpu.io/model": "resnet-50-bs64",
                "megagpu.io/backends": "cuda,vulkan",
                "megagpu.io/gpus": "1",
                "megagpu.io/memory-mib": "8192",
                "megagpu.io/precision": "fp32",
                "megagpu.io/priority": "normal",
                **({"megagpu.io/work-amount": repr(work)} if work else {}),
            },
            "creationTimestamp": "2026-11-26T00:00:00Z",
            "resourceVersion": "12345",
        },
        "spec": {
            "schedulerName": "megagpu-scheduler",
            "restartPolicy": "Never",
            "priorityClassName": "megagpu-normal",
            "priority": 2000,
            "containers": [
                {
                    "name": "trainer",
                    "image": "pytorch/pytorch:2.5.1",
                    "command": ["python", "train.py"],
                    "resources": {"limits": {"megagpu.io/gpu": "1"}},
                    "env": [
                        {
                            "name": "MEGAGPU_BACKEND",
                            "valueFrom": {
                                "fieldRef": {
                                    "fieldPath": "metadata.annotations['megagpu.io/"
                                    "assigned-backend']"
                                }
                            },
                        }
                    ],
                }
            ],
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }


def go_tool(source: str, name: str) -> Path:
    """Build the Go program in benchmarks/``source`` into the cache as ``name``, once."""
    from megagpu.devcluster import binaries

    folder = ROOT / "benchmarks" / source
    target = binaries.cache_root() / "tools" / name
    newest = max(p.stat().st_mtime for p in folder.iterdir())
    if not target.exists() or target.stat().st_mtime < newest:
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-o", str(target), "."], cwd=folder, check=True)
    return target


def load_generator() -> Path:
    """benchmarks/extender_load (Go, standard library only), built into the cache once."""
    return go_tool("extender_load", "extenderload")


def learned_state(path: Path) -> Path:
    """A Q-state that has seen the benchmark pod's class run on every device kind (5 runs each)."""
    from megagpu.core import model, qpolicy, qstate
    from megagpu.kube import convert

    policy = qpolicy.QPolicy()
    workload = convert.workload_from_pod(real_pod("seed", POD_WORK))
    for i in range(5):
        for (backend, device), rate in RATES.items():
            work = rate * 100.0
            policy.observe(
                model.Outcome(
                    uid=f"seed-{backend}-{device}-{i}",
                    workload=dataclasses.replace(
                        workload, uid=f"seed-{i}", declared=model.Work(work)
                    ),
                    node=f"{device}-seed",
                    backend=backend,
                    device_class=device,
                    duration_s=100.0,
                    work=work,
                    work_source="reported",
                )
            )
    path.write_text(qstate.dumps(policy))
    return path


def post(port: int, verb: str, body: dict[str, Any]) -> Any:
    """POST ``body`` to the extender's ``verb``; the decoded answer."""
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/{verb}",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def occupy(port: int, nodes: list[str], work: float) -> None:
    """Hold every device of ``nodes`` with 8 jobs of ``work`` each (filter, then bind)."""
    for name in nodes:
        for i in range(8):
            uid = f"busy-{name}-{i}"
            post(port, "filter", {"Pod": real_pod(uid, work), "NodeNames": [name]})
            post(
                port,
                "bind",
                {"PodName": uid, "PodNamespace": "ml", "PodUID": uid, "Node": name},
            )


def kept_by_filter(port: int, names: list[str], work: float | None) -> dict[str, Any]:
    """What filter answers a new pod at the end of a round: how many nodes it keeps, reasons."""
    answer = post(port, "filter", {"Pod": real_pod("after", work), "NodeNames": names})
    reasons = sorted(set((answer.get("FailedNodes") or {}).values()))
    return {"kept": len(answer.get("NodeNames") or []), "reasons": reasons[:3]}


def drive(
    port: int, names: list[str], tmp: Path, work: float | None, core: int = 1
) -> dict[str, Any]:
    """Run the Go load generator on ``core`` against the extender on ``port``."""
    (tmp / "pod.json").write_text(json.dumps(real_pod("UID", work)))
    (tmp / "names.json").write_text(json.dumps(names))
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(core),
            str(load_generator()),
            "-url",
            f"http://127.0.0.1:{port}",
            "-pod",
            str(tmp / "pod.json"),
            "-nodes",
            str(tmp / "names.json"),
            "-requests",
            str(REQUESTS),
            "-concurrency",
            str(CONCURRENCY),
            "-seconds",
            str(RATE_SECONDS),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"load generator failed: {out.stderr}")
    return json.loads(out.stdout)


def p50_p99(summary: dict[str, float] | None) -> str:
    """A latency summary as "p50 / p99" in ms; "-" where the verb was never sent."""
    return "-" if summary is None else f"{summary['p50_ms']:.2f} / {summary['p99_ms']:.2f}"


def wait_port(port: int) -> None:
    from megagpu.devcluster import processes

    deadline = time.monotonic() + 30
    while not processes.port_in_use(port):
        if time.monotonic() > deadline:
            raise SystemExit(f"extender did not listen on {port}")
        time.sleep(0.1)


def latency(size: int, tmp: Path, state: str = "places") -> dict[str, Any]:
    """One round at ``size`` nodes in ``state`` (one of ``STATES``)."""
    from megagpu.devcluster import processes

    spec = tmp / f"c{size}.yaml"
    cluster_spec(size, spec)
    predictions = state != "plain"
    port, metrics = processes.free_port(), processes.free_port()
    server = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "megagpu",
            "extender",
            "--snapshot",
            str(spec),
            "--port",
            str(port),
            "--metrics-port",
            str(metrics),
            "--mode",
            "frozen",
            *(["--policy-state", str(learned_state(tmp / "state.json"))] if predictions else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        wait_port(port)
        from megagpu.io import cluster_spec as cs

        nodes = cs.load(spec)
        names, work = [n.name for n in nodes], POD_WORK if predictions else None
        if predictions:
            occupy(port, [n.name for n in nodes if n.device_class == "h100"], BUSY_WORK[state])
        result = drive(port, names, tmp, work)
        result["server_handler_mean_ms"] = server_means(metrics)
        result["filter_answer"] = kept_by_filter(port, names, work)
        return result
    finally:
        server.terminate()
        server.wait()


def server_means(metrics_port: int) -> dict[str, float]:
    """Mean handler time per verb from the extender's own histogram, in ms."""
    import re
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
        text = response.read().decode()
    sums = dict(re.findall(r'request_duration_seconds_sum\{verb="(\w+)"\} (\S+)', text))
    counts = dict(re.findall(r'request_duration_seconds_count\{verb="(\w+)"\} (\S+)', text))
    return {v: 1000 * float(sums[v]) / max(float(counts[v]), 1) for v in sums}


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 600) -> float:
    """Seconds until ``url`` answers 200; fails at once when ``process`` has exited."""
    import urllib.request

    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if process.poll() is not None:
            raise SystemExit(f"extender exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"extender not ready after {timeout_s} s")


def main() -> None:
    from benchmarks import scheduler_rate  # which imports this module

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="node counts, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=LATENCY_ROUNDS, help="rounds per size")
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="skip the kube-scheduler pods/s runs (minutes); the last full run's are kept",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also measure without predictions (no state, size or busy node), alternating",
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
    kept = None
    if args.latency_only:
        kept = json.loads((RESULTS / "extender.json").read_text())
    states = [s for s in STATES if s != "plain" or args.baseline]
    with tempfile.TemporaryDirectory() as tmp:
        result: dict[str, Any] = {**common.header(), "latency": {s: {} for s in states}}
        for n in sizes:
            for _ in range(args.rounds):
                for state in states:  # alternating: the machine is shared and noisy
                    found = latency(n, Path(tmp), state)
                    result["latency"][state].setdefault(str(n), []).append(found)
        if kept is not None:
            result["pods_per_second_from"] = kept.get("pods_per_second_from") or {
                k: kept[k] for k in ("commit", "date")
            }
            for key in ("pods_per_second", "pods_per_second_minimal_extender"):
                result[key] = kept[key]
        else:
            result["pods_per_second"] = scheduler_rate.scheduling_rate(Path(tmp))
            minimal = scheduler_rate.scheduling_rate(Path(tmp) / "m", scheduler_rate.MINIMAL)
            result["pods_per_second_minimal_extender"] = minimal
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "extender.json").write_text(json.dumps(result, indent=1))

    def pair(rounds: list[dict[str, Any]], key: str) -> str:
        return " / ".join(f"{r['pair'][key]:.2f}" for r in rounds)

    named = {
        "places": "placed after waiting is assessed (the H100s' jobs end in 20 minutes)",
        "waits": "kept waiting for an H100 (their jobs end in 10 minutes; the cycle is filter "
        "alone: kube-scheduler sends no prioritize when filter keeps fewer than two nodes)",
        "plain": "without predictions (no state, size or busy node)",
    }
    lines = [
        f"# Extender speed\n\nCommand: `{result['command']}`; commit {result['commit']}; "
        f"{result['date']}; {result['machine']['cpu']}, {result['machine']['cores']} cores. "
        "Predictions and waiting on: a Q-state that knows the pod's class on every device "
        "kind, a declared size, every H100 held by a job, so that each filter assesses waiting "
        "over the busy nodes; with 20 minutes left there, the pod is placed (filter keeps the "
        "800 other nodes, prioritize predicts over them); with 10 minutes left, it waits (every "
        "node fails with the reason). "
        "The extender (snapshot mode) runs on core 0 (taskset); the load generator "
        "(benchmarks/extender_load, Go net/http and encoding/json like kube-scheduler) on core 1 "
        "sends real-shaped kube-scheduler bodies (nodeCacheCapable: node names). Latency: "
        f"{REQUESTS} scheduling cycles one at a time (filter, then prioritize of the survivors; "
        "the extender decides prioritize's answer while the client reads filter's, so that work "
        "falls between the two timed requests, as in kube-scheduler's cycle; like kube-scheduler "
        "(pkg/scheduler/schedule_one.go), no prioritize when fewer than two nodes survive: the "
        "waiting state's results up to commit 19b222c include one with no node). "
        f"Requests/s: each verb alone, {CONCURRENCY} requests in flight for {RATE_SECONDS:.0f} s, "
        f"so the one server core is saturated. {args.rounds} rounds per size, the states "
        "alternating, a row each.\n",
        *(
            f"**filter+prioritize p99 at {n} nodes, {named[state]}: "
            f"{pair(rounds, 'p99_ms')} ms** (p50 {pair(rounds, 'p50_ms')} ms)\n"
            for state, sized in result["latency"].items()
            for n, rounds in sized.items()
        ),
        "| state | nodes | filter p50 / p99 (ms) | prioritize p50 / p99 (ms) | "
        "filter+prioritize p50 / p99 (ms) | filter req/s | prioritize req/s | filter keeps |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def per_s(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    for state, sized in result["latency"].items():
        for n, rounds in sized.items():
            lines.extend(
                f"| {state} | {n} | {p50_p99(r['filter'])} | {p50_p99(r['prioritize'])} | "
                f"{p50_p99(r['pair'])} | {per_s(r['requests_per_s']['filter'])} | "
                f"{per_s(r['requests_per_s']['prioritize'])} | {r['filter_answer']['kept']} |"
                for r in rounds
            )
    answers = {
        (state, n): rounds[-1]["filter_answer"]
        for state, sized in result["latency"].items()
        for n, rounds in sized.items()
    }
    lines.append(
        "\nWhat filter answered a new pod at the end of each state's last round (after the "
        "request-rate phase, whose prioritize holds last their TTL and may fill a node): "
        + "; ".join(
            f"{state} at {n} nodes: {a['kept']} kept"
            + (f", {a['reasons'][0]!r}" if a["reasons"] else "")
            for (state, n), a in answers.items()
        )
        + "."
    )
    rate, fake_rate = result["pods_per_second"], result["pods_per_second_minimal_extender"]

    def listed(values: list[float]) -> str:
        return " / ".join(f"{v:.1f}" for v in values)

    kept_from = result.get("pods_per_second_from")
    lines.append(
        (
            f"\nFrom the last full run (commit {kept_from['commit']}, {kept_from['date']}; not "
            "rerun with --latency-only): "
            if kept_from
            else "\n"
        )
        + "kube-scheduler on the dev cluster (50 fake 8-GPU nodes; "
        f"{scheduler_rate.PODS} pods created pending, then the scheduler started; pods per "
        "second from the first bind to the last, seen by a watch; "
        f"{scheduler_rate.ROUNDS} rounds, without and with alternating): without the extender "
        f"{listed(rate['without'])} pods/s, with {listed(rate['with'])}; ratio of the medians "
        f"{rate['ratio_with_over_without']:.2f} (goal >= 0.8). Extender handler time in the "
        f"last with round (mean ms): {json.dumps(rate.get('server_mean_ms'))}. A minimal extender "
        "that echoes and binds (tests/e2e/fake_extender.py) for comparison: without "
        f"{listed(fake_rate['without'])}, with {listed(fake_rate['with'])}, ratio "
        f"{fake_rate['ratio_with_over_without']:.2f}. kube-scheduler binds through its own "
        "client, limited by default to 50 requests/s (burst 100), while the extender's bind "
        "writes the Binding itself: with that limit lifted (qps and burst 1000) the same runs "
        f"give without {listed(rate['without_qps1000'])}, with {listed(rate['with_qps1000'])}, "
        f"ratio {rate['ratio_with_over_without_qps1000']:.2f} (minimal extender: without "
        f"{listed(fake_rate['without_qps1000'])}, with {listed(fake_rate['with_qps1000'])}, "
        f"ratio {fake_rate['ratio_with_over_without_qps1000']:.2f}).\n"
    )
    (RESULTS / "extender.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
