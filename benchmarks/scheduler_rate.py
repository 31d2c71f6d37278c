"""kube-scheduler's pods per second with megagpu's extender over the stock scheduler and others.

Issue 19's goal: at least 0.8 at 1,000 nodes with kube-scheduler's own client limit lifted
(qps and burst 1,000), so that the comparison is not with a scheduler throttled to 50 writes/s.
Each round starts a kube-scheduler on a dev cluster of its own (kwok fake nodes of 8 devices,
all Ready first) with ``--pods`` pending pods; the ways alternate round by round: ``stock``
(kube-scheduler's default profile: what runs without megagpu), ``without`` (the
megagpu-scheduler profile without its extender: no score plugin, so kube-scheduler takes the
first feasible node), ``with`` (megagpu's extender), ``minimal`` and ``minimal-go`` (an extender
that echoes and binds, in Python and in Go: the protocol's own cost). Pods per second are from the
first bind to the last, seen by a watch. Writes benchmarks/results/scheduler-rate.json and .md.
Run: python benchmarks/scheduler_rate.py [--nodes 1000] [--rounds 3] [--pods 1000] [--throttled]
``make bench-extender`` (benchmarks/extender_load.py) takes its pods/s rounds from here too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, extender_load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

MINIMAL = [
    sys.executable,
    "-m",
    "tests.e2e.fake_extender",
    "{port}",
    "{kubeconfig}",
    "h100-3",
]
"""An extender that echoes filter, scores one node 10 and binds: the protocol's own cost."""
MINIMAL_GO = ["-port", "{port}", "-kubeconfig", "{kubeconfig}", "-preferred", "h100-3"]
"""Arguments of the same in Go with client-go (benchmarks/extender_minimal): the compiled floor."""
PODS = 300
"""Pods per rate measurement by default (50 fake nodes of 8 devices hold 400)."""
ROUNDS = 2
"""Rounds of each way by default, alternating, so that none profits from going later."""


def minimal_go() -> list[str]:
    """The Go minimal extender's command (built into the cache once), arguments to format."""
    return [str(extender_load.go_tool("extender_minimal", "extenderminimal")), *MINIMAL_GO]


def create_pending(core: Any, namespace: str, scheduler_name: str, pods: int = PODS) -> None:
    """Create the namespace and its ``pods`` pods for ``scheduler_name`` (not running yet)."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))

    def create(i: int) -> None:
        pod = extender_load.real_pod(f"{namespace}-{i}")
        pod["metadata"].pop("uid"), pod["metadata"].pop("resourceVersion")
        pod["metadata"]["namespace"] = namespace
        pod.pop("status")
        pod["spec"]["schedulerName"] = scheduler_name
        pod["spec"].pop("priorityClassName"), pod["spec"].pop("priority")
        core.create_namespaced_pod(namespace, pod)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(pods)))


def bind_rate(core: Any, namespace: str, pods: int = PODS) -> float:
    """Pods bound per second, from the first bind to the last (seen by a watch)."""
    from kubernetes import watch

    bound: dict[str, float] = {}
    deadline = time.monotonic() + 300
    while len(bound) < pods and time.monotonic() < deadline:
        stream = watch.Watch()  # a watch may end early: the next one lists again
        for event in stream.stream(core.list_namespaced_pod, namespace, timeout_seconds=60):
            pod = event["object"]
            if pod.spec.node_name and pod.metadata.name not in bound:
                bound[pod.metadata.name] = time.monotonic()
                if len(bound) == pods:
                    stream.stop()
    if len(bound) < pods:
        raise SystemExit(f"only {len(bound)} of {pods} pods were bound in 300 s")
    return (pods - 1) / (max(bound.values()) - min(bound.values()))


def scheduling_rate(
    tmp: Path,
    extender_cmd: list[str] | None = None,
    nodes: int = 50,
    limits: tuple[str, ...] = ("", "_qps1000"),
    rounds: int = ROUNDS,
    pods: int = PODS,
    ways: tuple[str, ...] = ("without", "with"),
) -> dict[str, Any]:
    """Pods per second of kube-scheduler in each of ``ways``, rounds alternating.

    ``with``: the megagpu-scheduler profile calling the extender (``extender_cmd``, else
    megagpu's); ``without``: the same profile without it (no score plugin and no extender, so
    kube-scheduler stops at the first feasible node); ``stock``: kube-scheduler's default
    profile and percentageOfNodesToScore, what a cluster without megagpu runs; ``minimal``: the
    profile calling tests/e2e/fake_extender.py (echoes, scores one node, binds), the protocol's
    own cost; ``minimal-go``: the same in Go (benchmarks/extender_minimal). ``limits``: ""
    runs kube-scheduler with its default client limit (50 requests/s), "_qps1000" with it
    lifted (qps and burst 1,000).
    """
    from kubernetes import client, config

    from megagpu.devcluster import binaries, components, processes, scheduler

    tmp.mkdir(parents=True, exist_ok=True)
    home = tmp / "xdg"
    target = home / "megagpu" / binaries.VERSION_KEY / "bin"
    target.mkdir(parents=True)
    for built in binaries.bin_dir().iterdir():  # the binaries and their version stamps
        (target / built.name).symlink_to(built)
    spec = tmp / "rate.yaml"
    extender_load.cluster_spec(nodes, spec)
    env = {**os.environ, "XDG_CACHE_HOME": str(home)}
    rates: dict[str, Any] = {}
    started: list[subprocess.Popen[bytes]] = []
    try:
        kubeconfig = common.dev_up(env, spec)
        core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        wait_schedulable(core, nodes)
        runs = [(way, f"{way}{limit}") for limit in limits for _ in range(rounds) for way in ways]
        for round_, (way, label) in enumerate(runs):
            name = f"{label.replace('_', '-')}-{round_}"  # a DNS label
            url, extender = None, None
            if way not in ("stock", "without"):  # an extender, only in its own rounds
                ext_port, metrics_port = processes.free_port(), processes.free_port()
                if way == "minimal":
                    command = MINIMAL
                elif way == "minimal-go":
                    command = minimal_go()
                else:
                    component = components.extender(kubeconfig, ext_port, metrics_port)
                    command = extender_cmd or [sys.executable, "-m", "megagpu", *component.args]
                extender = subprocess.Popen(
                    [c.format(port=ext_port, kubeconfig=kubeconfig) for c in command],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                started.append(extender)
                extender_load.wait_port(ext_port)
                url = f"http://127.0.0.1:{ext_port}"
            doc = scheduler.config(
                kubeconfig, scheduler.ExtenderOptions(url=url or "x"), f"bench-{name}"
            )
            if url is None:
                del doc["extenders"]
            if way == "stock":
                del doc["percentageOfNodesToScore"], doc["profiles"][0]["plugins"]
            if label.endswith("qps1000"):  # kube-scheduler's own client limit (50/s) lifted
                doc["clientConnection"].update(qps=1000, burst=1000)
            conf = scheduler.write(tmp / f"{name}.yaml", doc)
            namespace = f"rate-{name}"
            create_pending(core, namespace, f"bench-{name}", pods)
            if way == "with" and extender_cmd is None:
                extender_load.wait_ready(component.ready_url, extender)
            sched = subprocess.Popen(
                scheduler.argv(binaries.binary("kube-scheduler"), conf, processes.free_port()),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started.append(sched)
            rates.setdefault(label, []).append(bind_rate(core, namespace, pods))
            if way == "with" and extender_cmd is None:
                rates["server_mean_ms"] = extender_load.server_means(metrics_port)
            for process in reversed(started):
                process.terminate()
                process.wait()
            started.clear()
            core.delete_namespace(namespace)
            while namespace in {n.metadata.name for n in core.list_namespace().items}:
                time.sleep(0.5)  # its pods hold devices the next run needs
    finally:
        for process in started:  # also when a run failed: nothing may outlive the benchmark
            process.terminate()
            process.wait()
        common.dev(env, "down", check=False)
    for suffix in limits:
        for way in ways:
            if way != "with":
                rates[f"ratio_with_over_{way}{suffix}"] = statistics.median(
                    rates[f"with{suffix}"]
                ) / statistics.median(rates[f"{way}{suffix}"])
    return rates


def wait_schedulable(core: Any, nodes: int) -> None:
    """Wait until all ``nodes`` are Ready and untainted (a fresh cluster's are not at first)."""
    deadline, ready = time.monotonic() + 300, []
    while time.monotonic() < deadline:
        items = core.list_node().items
        ready = [
            n
            for n in items
            if not n.spec.taints
            and any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        ]
        if len(ready) >= nodes:
            return
        time.sleep(1)
    raise SystemExit(f"only {len(ready)} of {nodes} nodes became Ready and untainted in 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--throttled", action="store_true", help="also the default 50/s limit")
    parser.add_argument("--pods", type=int, default=1000, help="pending pods per round")
    args = parser.parse_args()
    limits = ("_qps1000", "") if args.throttled else ("_qps1000",)
    ways = ("stock", "without", "with", "minimal", "minimal-go")
    with tempfile.TemporaryDirectory() as tmp:
        rates = scheduling_rate(
            Path(tmp),
            nodes=args.nodes,
            limits=limits,
            rounds=args.rounds,
            pods=args.pods,
            ways=ways,
        )
    result = {**common.header(), "nodes": args.nodes, "pods": args.pods, **rates}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scheduler-rate.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# kube-scheduler pods/s: megagpu's extender over the stock scheduler and others\n\n"
        f"Command: `{result['command']}`; commit {result['commit']}; {result['date']}; "
        f"{result['machine']['cpu']}, {result['machine']['cores']} cores (shared with the "
        f"control plane). {args.nodes} kwok fake nodes of 8 devices, all Ready before the first "
        f"round; {args.pods} pods created pending, then the scheduler started; {args.rounds} "
        "rounds of each way, alternating; pods/s from the first bind to the last. Ways: stock "
        "(kube-scheduler's default profile, no extender: what a cluster without megagpu runs), "
        "first fit (the megagpu-scheduler profile without its extender: with no score plugin "
        "kube-scheduler stops at the first feasible node), minimal (that profile calling an "
        "extender that echoes filter, scores one node and binds: tests/e2e/fake_extender.py, "
        "and the same in Go with client-go: benchmarks/extender_minimal) and megagpu's "
        "extender. Goal: megagpu over stock >= 0.8 with kube-scheduler's client "
        "limit lifted.\n",
        "| kube-scheduler client limit | way | pods/s per round | median | megagpu over it |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "stock": "stock kube-scheduler",
        "without": "first fit (megagpu profile, no extender)",
        "minimal": "minimal extender (Python)",
        "minimal-go": "minimal extender (Go, client-go)",
        "with": "megagpu's extender",
    }
    for suffix in limits:
        limit = "lifted (qps, burst 1,000)" if suffix else "default (50/s, burst 100): throttled"
        for way in ways:
            values = rates[f"{way}{suffix}"]
            ratio = rates.get(f"ratio_with_over_{way}{suffix}")
            lines.append(
                f"| {limit} | {labels[way]} | {' / '.join(f'{v:.1f}' for v in values)} | "
                f"{statistics.median(values):.1f} | {'-' if ratio is None else f'{ratio:.2f}'} |"
            )
    if "server_mean_ms" in rates:
        means = ", ".join(f"{k} {v:.2f} ms" for k, v in rates["server_mean_ms"].items())
        lines.append(f"\nExtender handler time, mean over its last run: {means}.\n")
    (RESULTS / "scheduler-rate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
