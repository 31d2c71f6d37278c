"""Extender with live informers (issue 19): idle CPU, filter+prioritize latency, memory.

A dev cluster (kwok fake nodes) with N nodes, one GpuNode each whose status (utilization, used
memory, temperature, lastProbeTime) this script rewrites every 15 s, spread evenly; the extender
watches the cluster as in production (no snapshot). Idle: the extender's CPU time over IDLE_S
while the updates flow and no scheduling request comes. Latency: the Go load generator of
``make bench-extender`` (benchmarks/extender_load) on core 1 (``dedicated``: core 0), the
extender on core 0, while the updates go on. Memory: the extender's resident set (now and
peak). Reference: the same load, updates flowing, against the Go minimal extender
(benchmarks/extender_minimal, echoes) on core 0 once megagpu's has stopped; before it, megagpu's
extender in snapshot mode (the same nodes, no watch) on the same cluster and core: what the
watches add.
Each size runs twice, on a fresh cluster each time: ``shared``, the control plane free to use both
cores (this 2-core VM runs an API server, etcd and kwok for thousands of nodes beside the
extender); ``dedicated``, the control plane, kwok and the GpuNode writer confined to core 1 and
the extender with the load generator alone on core 0, as a Guaranteed pod with whole CPUs gets
them under the kubelet's static CPU manager policy.
Writes benchmarks/results/extender-live.json and extender-live.md.
Run: make bench-extender-live (sizes: MEGAGPU_BENCH_SIZES, default 1000,5000).
Goals: idle CPU < 10% of a core at 1,000 nodes and < 25% at 5,000; filter+prioritize p99 < 2 ms
and < 10 ms.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, extender_inprocess, extender_load, scheduler_rate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
RESULTS = ROOT / "benchmarks" / "results"
UPDATE_PERIOD_S = 15.0
IDLE_S = 60.0
SETTLE_S = 20.0
"""After the extender is ready and the updates have started, before measuring."""
GOALS = {
    1000: {"idle_cpu_share": 0.10, "pair_p99_ms": 2.0},
    5000: {"idle_cpu_share": 0.25, "pair_p99_ms": 10.0},
}
DEVICES = 8
WRITERS = 6
IN_FLIGHT = 2 * WRITERS
"""Writes queued or running at most: beyond that a slot is skipped, so that no backlog builds
up where the API server takes fewer writes than aimed at (it would still drain while paused)."""
CORES = ("shared", "dedicated")


def gpunode_status(name: str, rng: random.Random) -> dict[str, Any]:
    """A GpuNode status as the probe writes it: healthy devices, readings that change."""
    devices = [
        {
            "index": i,
            "uuid": f"GPU-{name}-{i}",
            "name": "NVIDIA H100 80GB HBM3",
            "memoryMiB": 81559,
            "usedMiB": rng.randrange(0, 81559),
            "utilization": rng.randrange(0, 101),
            "temperatureC": rng.randrange(30, 80),
            "powerW": rng.randrange(60, 700),
            "computeCapability": "9.0",
            "healthy": True,
        }
        for i in range(DEVICES)
    ]
    return {
        "summary": {"backends": "cuda", "devices": DEVICES, "healthy": DEVICES},
        "devices": [
            {
                "index": i,
                "id": f"GPU-{name}-{i}",
                "uuid": f"GPU-{name}-{i}",
                "backend": "cuda",
                "healthy": True,
            }
            for i in range(DEVICES)
        ],
        "backends": {
            "cuda": {
                "available": True,
                "healthy": True,
                "driverVersion": "580.65",
                "devices": devices,
            }
        },
        "lastProbeTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class Updater:
    """Creates a GpuNode per node, then rewrites each one's status every UPDATE_PERIOD_S."""

    def __init__(self, kubeconfig: Path, names: list[str]) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(str(kubeconfig))
        api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 8
        self.custom = client.CustomObjectsApi(api)
        self.names, self.rng = names, random.Random(0)
        self.stop, self.done, self.errors = threading.Event(), 0, 0
        self.paused = threading.Event()
        """Set: no writes (the baseline latency phase)."""
        self.pool = ThreadPoolExecutor(WRITERS)
        self.slots = threading.BoundedSemaphore(IN_FLIGHT)
        self.skipped = 0
        """Slots skipped because IN_FLIGHT writes were still waiting (the API server's limit)."""
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def create(self) -> None:
        from megagpu.kube import names as n

        def one(name: str) -> None:
            body = {"apiVersion": n.API_VERSION, "kind": "GpuNode", "metadata": {"name": name}}
            self.custom.create_cluster_custom_object(n.GROUP, n.VERSION, n.GPUNODES, body)
            self.slots.acquire()
            self._write(name)

        list(self.pool.map(one, self.names))

    def _write(self, name: str) -> None:
        from megagpu.kube import names as n

        try:
            self.custom.patch_cluster_custom_object_status(
                n.GROUP,
                n.VERSION,
                n.GPUNODES,
                name,
                {"status": gpunode_status(name, self.rng)},
                _preload_content=False,
            )
            self.done += 1
        except Exception:  # noqa: BLE001 - counted and reported
            self.errors += 1
        finally:
            self.slots.release()

    def _loop(self) -> None:
        gap = UPDATE_PERIOD_S / len(self.names)
        start = time.monotonic()
        i = 0
        while not self.stop.is_set():
            due = start + i * gap
            delay = due - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            if self.paused.is_set():
                start += gap  # a paused slot is skipped, not made up after (nor spun on)
                continue
            if self.slots.acquire(blocking=False):
                self.pool.submit(self._write, self.names[i % len(self.names)])
            else:
                self.skipped += 1
            i += 1

    def rate(self, seconds: float) -> float:
        """Status writes per second over the next ``seconds``."""
        before = self.done
        time.sleep(seconds)
        return (self.done - before) / seconds

    def during(self, phase: Callable[[], T]) -> tuple[T, float]:
        """What ``phase()`` returns, and the status writes per second while it ran."""
        before, start = self.done, time.monotonic()
        done = phase()
        return done, round((self.done - before) / (time.monotonic() - start), 1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> dict[str, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {k: round(int(status[k].split()[0]) / 1024, 1) for k in ("VmRSS", "VmHWM")}


def server_buckets(metrics_port: int) -> dict[str, dict[str, float]]:
    """Cumulative handler-time histogram counts of filter and prioritize (server side)."""
    import re

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
        text = response.read().decode()
    found: dict[str, dict[str, float]] = {}
    for block, count in re.findall(r"request_duration_seconds_bucket\{([^}]*)\} (\S+)", text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', block))
        if labels.get("verb") in ("filter", "prioritize"):
            found.setdefault(labels["verb"], {})[labels["le"]] = float(count)
    return found


def within(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict:
    """Share of requests the server handled within 2 and 10 ms between two readings."""
    shares = {}
    for verb, counts in after.items():
        total = counts["+Inf"] - before.get(verb, {}).get("+Inf", 0)
        shares[verb] = (
            {
                f"within_{le}_s": round((counts[le] - before.get(verb, {}).get(le, 0)) / total, 4)
                for le in ("0.002", "0.01")
            }
            if total
            else {}
        )
    return shares


def latency_phase(
    port: int, metrics_port: int, names: list[str], tmp: Path, core: int
) -> dict[str, Any]:
    """The load generator's client-side latency and the server-side histogram shares."""
    before = server_buckets(metrics_port)
    result = extender_load.drive(port, names, tmp, None, core)  # no declared size: no prediction
    result["server_side"] = within(before, server_buckets(metrics_port))
    return result


def minimal_reference(kubeconfig: Path, names: list[str], tmp: Path, core: int) -> dict[str, Any]:
    """The same load against the Go minimal extender (benchmarks/extender_minimal): what the
    machine adds to an extender that does nothing."""
    return reference_run(
        lambda port: [
            a.format(port=port, kubeconfig=kubeconfig) for a in scheduler_rate.minimal_go()
        ],
        names,
        tmp,
        core,
    )


def snapshot_reference(spec: Path, names: list[str], tmp: Path, core: int) -> dict[str, Any]:
    """The same load against megagpu's extender in snapshot mode (the same nodes from the
    cluster spec, no watch at all): what the watches add to megagpu's latency."""
    from megagpu.devcluster import processes

    return reference_run(
        lambda port: (
            [sys.executable, "-m", "megagpu", "extender", "--snapshot", str(spec)]
            + ["--port", str(port), "--metrics-port", str(processes.free_port())]
        ),
        names,
        tmp,
        core,
    )


def reference_run(
    command: Callable[[int], list[str]], names: list[str], tmp: Path, core: int
) -> dict[str, Any]:
    """The load against the server ``command(port)`` starts on core 0, on the same cluster with
    the updates flowing (one sample, taken after megagpu's live extender has stopped)."""
    from megagpu.devcluster import processes

    port = processes.free_port()
    server = subprocess.Popen(
        ["taskset", "-c", "0", *command(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        extender_load.wait_port(port)
        return extender_load.drive(port, names, tmp, None, core)
    finally:
        server.terminate()
        server.wait()


def measure(size: int, tmp: Path, cores: str) -> dict[str, Any]:
    """One dev cluster of ``size`` nodes, the updates, the extender: idle CPU and latency.

    ``cores``: ``shared`` or ``dedicated`` (everything but the extender and the load generator
    on core 1: this thread's affinity, which the cluster, the writer's threads inherit).
    """
    saved = os.sched_getaffinity(0)
    if cores == "dedicated":
        os.sched_setaffinity(0, {1})
    try:
        return _measure(size, tmp, cores)
    finally:
        os.sched_setaffinity(0, saved)


def _measure(size: int, tmp: Path, cores: str) -> dict[str, Any]:
    from megagpu.devcluster import components, processes
    from megagpu.io import cluster_spec as cs

    spec = tmp / f"live-{size}.yaml"
    extender_load.cluster_spec(size, spec)
    names = [n.name for n in cs.load(spec)]
    env = dict(os.environ)  # the cluster is $MEGAGPU_DEV_CLUSTER (make: megagpu-bench)
    extender = None
    updater = None
    started = time.monotonic()
    try:
        kubeconfig = common.dev_up(env, spec)
        result: dict[str, Any] = {
            "nodes": len(names),
            "cores": cores,
            "cluster_up_s": round(time.monotonic() - started, 1),
        }
        updater = Updater(kubeconfig, names)
        started = time.monotonic()
        updater.create()
        result["gpunodes_created_s"] = round(time.monotonic() - started, 1)
        port, metrics_port = processes.free_port(), processes.free_port()
        component = components.extender(kubeconfig, port, metrics_port)
        log = (tmp / f"extender-{size}.log").open("wb")
        extender = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "megagpu", *component.args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        result["extender_ready_s"] = round(
            extender_load.wait_ready(component.ready_url, extender), 1
        )
        updater.thread.start()
        time.sleep(SETTLE_S)
        before, t0 = cpu_seconds(extender.pid), time.monotonic()
        result["gpunode_writes_per_s"] = round(updater.rate(IDLE_S), 1)
        used = cpu_seconds(extender.pid) - before
        result["idle_cpu_share_of_a_core"] = round(used / (time.monotonic() - t0), 4)
        result["memory_mib_idle"] = memory_mib(extender.pid)
        load_core = 0 if cores == "dedicated" else 1
        result["latency"], result["gpunode_writes_per_s_during_latency"] = updater.during(
            lambda: latency_phase(port, metrics_port, names, tmp, load_core)
        )
        updater.paused.set()  # the same cluster and machine, no updates: the baseline
        time.sleep(2)
        writes_before = updater.done
        result["latency_updates_paused"] = latency_phase(port, metrics_port, names, tmp, load_core)
        result["gpunode_writes_while_paused"] = updater.done - writes_before
        updater.paused.clear()
        result["gpunode_slots_skipped"] = updater.skipped
        result["memory_mib_after"] = memory_mib(extender.pid)
        extender.terminate()
        extender.wait()
        result["latency_snapshot"], result["gpunode_writes_per_s_during_snapshot"] = updater.during(
            lambda: snapshot_reference(spec, names, tmp, load_core)
        )
        result["latency_minimal_go"], result["gpunode_writes_per_s_during_minimal_go"] = (
            updater.during(lambda: minimal_reference(kubeconfig, names, tmp, load_core))
        )
        result["gpunode_write_errors"] = updater.errors
        text = (tmp / f"extender-{size}.log").read_text(errors="replace")
        result["extender_log"] = {
            "lists_after_410": text.count("410 Gone"),
            "cache_failures": text.count("cache failed"),
            "nodes_skipped": text.count("skipped"),
        }
        result["goals"] = GOALS.get(size)
    finally:
        if updater is not None:
            updater.stop.set()
            if updater.thread.ident is not None:
                updater.thread.join()
            updater.pool.shutdown(wait=True, cancel_futures=True)
        if extender is not None:
            extender.terminate()
            extender.wait()
        common.dev(env, "down", check=False)
    return result


def reference(run: dict[str, Any], name: str) -> str:
    """A reference's pair p50 / p99 and the write rate meanwhile ("-" when not measured)."""
    pair = run.get(f"latency_{name}", {}).get("pair")
    if not pair:
        return "-"
    writes = run.get(f"gpunode_writes_per_s_during_{name}", "-")
    return f"{pair['p50_ms']:.2f} / {pair['p99_ms']:.2f}, {writes}"


def report(result: dict[str, Any]) -> str:
    lines = [
        "# Extender with live informers\n",
        f"{common.provenance(result)} (shared with other "
        "work). A dev cluster of kwok fake nodes (8 devices each) with one GpuNode per node "
        f"whose status is rewritten every {UPDATE_PERIOD_S:.0f} s (spread evenly); the extender "
        "(core 0) watches Nodes, GpuNodes, pods and the Q-state. Idle CPU: extender CPU time "
        f"over {IDLE_S:.0f} s with the updates flowing and no request. Latency: the Go load "
        "generator of make bench-extender, filter then prioritize per cycle, while the updates "
        "go on. Cores: `shared`, the control plane, kwok and the GpuNode writer free to use "
        "both cores, the load generator on core 1; `dedicated`, all of those confined to core "
        "1 and the load generator on core 0 with the extender (a fresh cluster each), as a "
        "Guaranteed pod with whole CPUs has them under the kubelet's static CPU manager "
        "policy. megagpu in snapshot mode: the same load on the same cluster, updates flowing, "
        "against megagpu's extender serving the same nodes from the cluster spec with no watch "
        "at all, on core 0 once the live one has stopped: what the watches add (one sample). "
        "Go minimal extender: the same load on the same cluster, updates flowing, "
        "against benchmarks/extender_minimal (echoes filter, scores one node) on core 0 once "
        "megagpu's extender has stopped: what the machine adds to an extender that does "
        "nothing (one sample, after megagpu's). "
        "GpuNode writes/s is what the writer achieved, not what it aimed at (one "
        f"write per node every {UPDATE_PERIOD_S:.0f} s; a write is skipped while "
        f"{IN_FLIGHT} are still queued): with the control plane on one core it takes fewer, so "
        "the two rows of a size are not under the same write load.\n",
        "| nodes | cores | GpuNode writes/s | idle CPU (share of a core) | filter+prioritize "
        "p50 / p99 (ms) | same, updates paused | filter p50 / p99 | prioritize p50 / p99 | "
        "server-side filter, prioritize within 2 ms | RSS idle / peak (MiB) | megagpu in "
        "snapshot mode p50 / p99 (ms), GpuNode writes/s meanwhile | Go minimal extender, the "
        "same | goals |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lat, goals = r["latency"], r["goals"] or {"idle_cpu_share": "-", "pair_p99_ms": "-"}
        paused, server = r["latency_updates_paused"]["pair"], lat["server_side"]
        floor_text, snapshot_text = reference(r, "minimal_go"), reference(r, "snapshot")
        lines.append(
            f"| {r['nodes']} | {r.get('cores', 'shared')} | {r['gpunode_writes_per_s']} "
            f"| {r['idle_cpu_share_of_a_core']:.3f} "
            f"| {extender_load.p50_p99(lat['pair'])} | {extender_load.p50_p99(paused)} "
            f"| {extender_load.p50_p99(lat['filter'])} "
            f"| {extender_load.p50_p99(lat['prioritize'])} "
            f"| {server['filter'].get('within_0.002_s')}, "
            f"{server['prioritize'].get('within_0.002_s')} "
            f"| {r['memory_mib_idle']['VmRSS']} / {r['memory_mib_after']['VmHWM']} "
            f"| {snapshot_text} | {floor_text} "
            f"| CPU < {goals['idle_cpu_share']}, p99 < {goals['pair_p99_ms']} ms |"
        )
    lines.append(
        "\nIn-process (benchmarks/extender_inprocess.py: no control plane on the machine, no "
        "HTTP): GpuNode watch events through the extender's informer path, and filter+prioritize "
        f"of {extender_inprocess.CYCLES} pods with a thread feeding events at the live rate "
        "and without it.\n\n| nodes | µs per GpuNode event | events/s | predicted CPU (share "
        "of a core) | filter+prioritize p50 / p99 (ms), updates flowing | same, no updates |\n"
        "|---|---|---|---|---|---|"
    )
    for r in result.get("in_process", []):
        busy, quiet = r["pair_ms_updates_flowing"], r["pair_ms_no_updates"]
        lines.append(
            f"| {r['nodes']} | {r['per_event_us']} | {r['events_per_s']:.0f} "
            f"| {r['predicted_cpu_share_of_a_core']} | {busy['p50']} / {busy['p99']} "
            f"| {quiet['p50']} / {quiet['p99']} |"
        )
    lines.extend(f"\n{note}" for note in result.get("notes", []))
    return "\n".join(lines) + "\n"


def main() -> None:
    sizes = [int(s) for s in os.environ.get("MEGAGPU_BENCH_SIZES", "1000,5000").split(",")]
    suffix = "" if sizes == [1000, 5000] else "-" + "-".join(map(str, sizes))
    result: dict[str, Any] = {**common.header(), "sizes": sizes, "runs": []}
    RESULTS.mkdir(exist_ok=True)
    result["in_process"] = [extender_inprocess.measure(size) for size in sizes]
    scheduler_rate.minimal_go()  # built before any timing
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:  # written after each run: a later one may not finish
            for cores in CORES:
                result["runs"].append(measure(size, Path(tmp), cores))
                (RESULTS / f"extender-live{suffix}.json").write_text(json.dumps(result, indent=1))
                (RESULTS / f"extender-live{suffix}.md").write_text(report(result))
    print(report(result))


if __name__ == "__main__":
    main()
