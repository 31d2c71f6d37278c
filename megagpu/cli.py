"""The ``megagpu`` command: the only composition root (plots and progress bars live here)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PLANNED = {
    "exec": ("5", "run a command with CUDA_VISIBLE_DEVICES and friends set from the assignment"),
}


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    from megagpu.io import convert

    parser = argparse.ArgumentParser(
        prog="megagpu",
        description="Run AI workloads on mixed accelerators with a scheduler that learns.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sim = sub.add_parser("sim", help="simulate schedulers on real measured data and compare them")
    sim.add_argument("--preset", help="a named scenario (see --list-presets)")
    sim.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    sim.add_argument("--cluster", type=Path, help="cluster spec YAML (DESIGN 9.5)")
    sim.add_argument("--throughputs", type=Path, help="throughput table CSV")
    sim.add_argument("--trace", type=Path, help="trace CSV")
    sim.add_argument(
        "--drop-oversized",
        action="store_true",
        help="drop trace rows larger than the largest node (and count them)",
    )
    sim.add_argument("--policies", default="all", help="comma list or 'all'")
    sim.add_argument("--seeds", type=int, default=1, help="run seeds 0..N-1 (default 1)")
    sim.add_argument("--json", type=Path, help="write the report (DESIGN 9.6) here")
    sim.add_argument("--plot", type=Path, help="write a PNG of JCT over time per policy")
    simsub = sim.add_subparsers(dest="sim_command", metavar="convert")
    conv = simsub.add_parser("convert", help="convert upstream data to megagpu's formats")
    conv.add_argument("kind", choices=convert.KINDS)
    conv.add_argument("input", type=Path)
    conv.add_argument("-o", "--output", type=Path, required=True)
    conv.add_argument("--load", type=float, default=0.5, help="philly: offered load")
    conv.add_argument("--jobs", type=int, default=2000, help="philly: number of jobs")
    conv.add_argument("--seed", type=int, default=0, help="philly: random seed")
    conv.add_argument("--cluster", type=Path, help="philly: cluster spec (for the capacity)")
    conv.add_argument("--throughputs", type=Path, help="philly: throughput table")
    conv.add_argument("--scale", type=float, default=0.02, help="openb: share of nodes kept")

    dev = sub.add_parser("dev", help="a real local Kubernetes control plane with fake GPU nodes")
    devsub = dev.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    up = devsub.add_parser("up", help="start it (build the binaries once); exits when ready")
    up.add_argument(
        "--cluster-spec", type=Path, help="fake nodes (default examples/clusters/dev.yaml)"
    )
    up.add_argument("--no-components", action="store_true", help="start the control plane alone")
    up.add_argument("--extender-url", default="http://127.0.0.1:8888")
    up.add_argument("--extender-timeout", type=float, default=2.0, help="seconds")
    up.add_argument(
        "--extender-not-ignorable",
        action="store_true",
        help="fail scheduling while the extender is down (default: ignorable)",
    )
    up.add_argument("--apiserver-port", type=int, default=0, help="default: a free port")
    up.add_argument(
        "--time-scale",
        type=float,
        default=1 / 3600,
        help="real seconds per simulated second (default 1/3600: an hour in 1 s)",
    )
    rt = devsub.add_parser("runtime", help="(started by up) complete pods after simulated time")
    rt.add_argument("--kubeconfig", type=Path, required=True)
    rt.add_argument("--time-scale", type=float, default=1 / 3600)
    rt.add_argument("--health-port", type=int, default=8082)
    devsub.add_parser("down", help="stop every process it started and delete the cluster")
    devsub.add_parser("status", help="exit 0 when the cluster is up and ready, 1 otherwise")
    devsub.add_parser("kubeconfig", help="print the kubeconfig path (exit 1 without a cluster)")
    devsub.add_parser("build", help="build the cluster binaries into the cache (once)")

    ext = sub.add_parser(
        "extender",
        help="serve the scheduler extender (filter, prioritize, bind) with the learned Q-policy",
    )
    source = ext.add_mutually_exclusive_group(required=True)
    source.add_argument("--kubeconfig", type=Path, help="serve a cluster (watches its state)")
    source.add_argument("--snapshot", type=Path, help="serve a cluster spec with no API server")
    ext.add_argument(
        "--namespace", default="megagpu-system", help="release namespace (Q-state ConfigMap)"
    )
    ext.add_argument("--policy-state", type=Path, help="Q-state JSON document to start from")
    ext.add_argument(
        "--mode",
        choices=("frozen", "active"),
        default="active",
        help="snapshot mode: frozen never explores",
    )
    ext.add_argument("--seed", type=int, default=0, help="exploration seed")
    ext.add_argument("--host", default="127.0.0.1")
    ext.add_argument("--port", type=int, default=8888)
    ext.add_argument("--metrics-port", type=int, default=8889)
    ext.add_argument("--metrics-host", help="where /metrics listens (default: --host)")
    ext.add_argument("--tls-cert", type=Path)
    ext.add_argument("--tls-key", type=Path)
    op = sub.add_parser(
        "operator", help="run the GpuWorkload operator (kopf): pods, status, retries, learning"
    )
    op.add_argument("--kubeconfig", type=Path, help="default: in-cluster service account")
    op.add_argument(
        "--namespace", default="megagpu-system", help="release namespace (Lease, Q-state)"
    )
    op.add_argument("--resource-mode", choices=("megagpu", "vendor"), default="megagpu")
    op.add_argument("--liveness", default="http://127.0.0.1:8081/healthz")
    op.add_argument("--metrics", default="127.0.0.1:8080", help="HOST:PORT of /metrics")
    pr = sub.add_parser("probe", help="probe CUDA, Vulkan and CPU devices; DCGM-style metrics")
    pr.add_argument("--once", action="store_true", help="print one reading and exit")
    pr.add_argument("--format", choices=("json", "prometheus"), default="json")
    pr.add_argument("--benchmarks", action="store_true", help="run short GEMM/copy benchmarks")
    pr.add_argument("--no-dcgm", action="store_true", help="leave out the DCGM families")
    pr.add_argument("--listen", default="127.0.0.1:9400", help="HOST:PORT of /metrics")
    pr.add_argument(
        "--simulate",
        action="store_true",
        help="publish plausible readings for every node of --cluster-spec",
    )
    pr.add_argument("--cluster-spec", type=Path, help="with --simulate: the fake nodes")
    pr.add_argument("--publish", action="store_true", help="write GpuNode status")
    pr.add_argument("--kubeconfig", type=Path, help="with --publish (default: in-cluster)")
    pr.add_argument("--node-name", help="GpuNode name (default: $NODE_NAME or the hostname)")
    pr.add_argument("--interval", type=float, default=15.0, help="seconds between readings")
    pol = sub.add_parser("policy", help="show, reset, export, import or roll back the Q-state")
    pol.add_argument("action", choices=("show", "reset", "export", "import", "rollback"))
    pol.add_argument("file", nargs="?", type=Path, help="import: the Q-state JSON document")
    pol.add_argument("-o", "--output", type=Path, help="export: write here (default stdout)")
    pol.add_argument("--to", type=int, help="rollback: the kept version (default: previous)")
    pol.add_argument("--kubeconfig", type=Path)
    pol.add_argument("--namespace", default="megagpu-system")
    exp = sub.add_parser("explain", help="why a GpuWorkload went where it went")
    exp.add_argument("name")
    exp.add_argument("-n", "--namespace", default="default")
    exp.add_argument("--kubeconfig", type=Path)
    demo = sub.add_parser("demo", help="the main job end to end on the embedded dev cluster")
    demo.add_argument("--preset", default="gavel-0.3", help="simulation shown for learning")
    demo.add_argument("--waves", type=int, default=3, help="waves of 20 workloads on the cluster")
    tui = sub.add_parser("tui", help="the terminal dashboard: GPUs, workloads and the agent")
    tui.add_argument("--source", choices=("cluster", "sim"), default="cluster")
    tui.add_argument("--kubeconfig", type=Path)
    tui.add_argument("-n", "--namespace", default="all", help="namespace shown (default all)")
    tui.add_argument("--cluster-spec", type=Path, help="sim: cluster spec (default dev.yaml)")
    tui.add_argument("--seed", type=int, default=0, help="sim: random seed")
    tui.add_argument("--speed", type=float, default=30.0, help="sim: simulated s per second")
    tui.add_argument("--refresh", type=float, default=1.0, help="seconds between refreshes")
    uni = sub.add_parser("uninstall", help="clear megagpu finalizers (before helm uninstall)")
    uni.add_argument("--kubeconfig", type=Path, help="default: in-cluster, then $KUBECONFIG")
    for name, (issue, what) in PLANNED.items():
        planned = sub.add_parser(name, help=f"{what} (planned: issue {issue})")
        planned.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.command_line = "megagpu " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in PLANNED:
        issue, what = PLANNED[args.command]
        print(
            f"megagpu {args.command}: not built yet; it will {what} (issue {issue})",
            file=sys.stderr,
        )
        return 2
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "sim": _sim,
        "dev": _dev,
        "demo": _demo,
        "extender": _extender,
        "operator": _operator,
        "probe": _probe,
        "policy": _policy,
        "explain": _explain,
        "tui": _tui,
        "uninstall": _uninstall,
    }
    try:
        return handlers[args.command](args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - user-facing errors become one line, never a traceback
        from megagpu.devcluster.errors import DevClusterError
        from megagpu.io.errors import InputError
        from megagpu.kube.client import ClusterUnreachable
        from megagpu.operator.tools import ToolError

        known = (DevClusterError, InputError, ClusterUnreachable, ToolError, ValueError, KeyError)
        if isinstance(e, known):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise


# --- sim ---------------------------------------------------------------------------------
def _sim(args: argparse.Namespace) -> int:
    from megagpu.io import presets

    if args.sim_command == "convert":
        return _convert(args)
    if args.list_presets:
        for preset in presets.PRESETS.values():
            print(f"{preset.name:12} {preset.description}")
        return 0
    build, preset_name, load = _scenario(args)
    from megagpu.sim import evaluation, runner

    policies = runner.parse_policies(args.policies)
    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    seeds = list(range(args.seeds))
    runs = _run_with_progress(runner, build, policies, seeds)
    doc = evaluation.report(
        command=args.command_line, preset=preset_name, load=load, seeds=seeds, runs=runs
    )
    _print_table(doc)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"report: {args.json}")
    if args.plot:
        _plot(build, policies, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _scenario(args: argparse.Namespace) -> tuple[Any, str | None, float | None]:
    from megagpu.io import cluster_spec, presets, tables
    from megagpu.sim import simulator

    if args.preset:
        if args.cluster or args.trace or args.throughputs:
            raise UsageError("give either --preset or --cluster/--throughputs/--trace, not both")
        try:
            preset = presets.get(args.preset)
        except KeyError as e:
            raise UsageError(e.args[0]) from e
        return preset.build, preset.name, preset.load
    if not (args.cluster and args.throughputs and args.trace):
        raise UsageError("give --preset NAME, or all of --cluster, --throughputs and --trace")
    nodes = cluster_spec.load(args.cluster)
    table = tables.load_throughputs(args.throughputs)
    jobs, dropped = tables.load_trace(
        args.trace, table, max(n.slots for n in nodes), drop_oversized=args.drop_oversized
    )
    if dropped:
        print(f"dropped {dropped} trace rows larger than the largest node")
    scenario = simulator.Scenario(tuple(nodes), tuple(jobs), table)
    return (lambda _seed: scenario), None, None


def _run_with_progress(
    runner: Any, build: Any, policies: list[str], seeds: list[int]
) -> list[tuple[str, int, dict[str, Any]]]:
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task("simulating", total=len(policies) * len(seeds))

        def step(name: str, seed: int) -> None:
            progress.update(task, advance=1, description=f"{name} seed {seed}")

        return list(runner.run(build, policies, seeds, progress=step))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:,.1f}"
    return str(value)


def _print_table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from megagpu.sim import evaluation

    table = Table(title=f"megagpu sim: {doc['preset'] or 'files'}, seeds {doc['seeds']}")
    columns = [m for m in evaluation.METRICS if m != "n_jobs"]
    table.add_column("policy")
    for column in columns:
        title = column.removesuffix("_s").replace("_", " ")
        table.add_column(title + (" (h)" if column.endswith("_s") else ""), justify="right")
    table.add_column("avg JCT 95% CI (h)", justify="right")
    for policy, row in doc["summary"].items():
        cells = [_fmt(row[c] / 3600 if c.endswith("_s") else row[c]) for c in columns]
        lo, hi = row["ci95_avg_jct_s"]
        table.add_row(policy, *cells, f"{lo / 3600:.1f}-{hi / 3600:.1f}")
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def _plot(build: Any, policies: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from megagpu.sim import runner, simulator

    scenario = build(0)
    fig, ax = plt.subplots(figsize=(9, 5))
    for name in policies:
        result = simulator.simulate(scenario, runner.factory(name), 0)
        records = sorted(result.records, key=lambda r: r.finish_s)
        jct = np.asarray([r.finish_s - r.arrival_s for r in records])
        window = max(1, min(100, len(jct) // 10))
        smooth = np.convolve(jct, np.ones(window) / window, mode="valid")
        ax.plot([r.finish_s / 3600 for r in records][window - 1 :], smooth / 3600, label=name)
    ax.set_xlabel("simulated time (h)")
    ax.set_ylabel(f"JCT, moving mean of {window} jobs (h)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _convert(args: argparse.Namespace) -> int:
    from megagpu.io import convert

    convert.convert(
        args.kind,
        args.input,
        args.output,
        load=args.load,
        jobs=args.jobs,
        seed=args.seed,
        cluster=args.cluster,
        throughputs=args.throughputs,
        scale=args.scale,
    )
    print(f"wrote {args.output}")
    return 0


# --- dev ---------------------------------------------------------------------------------
def _dev(args: argparse.Namespace) -> int:
    from megagpu.devcluster import binaries, cluster, scheduler

    def out(line: str) -> None:
        print(line, flush=True)

    if args.dev_command == "up":
        extender = scheduler.ExtenderOptions(
            url=args.extender_url,
            timeout_s=args.extender_timeout,
            ignorable=not args.extender_not_ignorable,
        )
        cluster.up(
            args.cluster_spec or cluster.DEFAULT_SPEC,
            extender,
            components=not args.no_components,
            apiserver_port=args.apiserver_port,
            time_scale=args.time_scale,
            out=out,
        )
        return 0
    if args.dev_command == "runtime":
        return _runtime(args)
    if args.dev_command == "down":
        cluster.down(out=out)
        return 0
    if args.dev_command == "build":
        spent = binaries.ensure(out)
        state = f"built in {spent:.0f}s" if spent else "cached"
        out(f"binaries in {binaries.bin_dir()} ({state})")
        return 0
    if args.dev_command == "status":
        problems = cluster.problems(cluster.paths())
        for line in problems:
            out(line)
        if not problems:
            out(f"dev cluster is up and ready; kubeconfig: {cluster.paths().kubeconfig}")
        return 1 if problems else 0
    print(cluster.kubeconfig())
    return 0


# --- demo --------------------------------------------------------------------------------
DEMO_NAMESPACE = "megagpu-demo"


def _demo(args: argparse.Namespace) -> int:
    """Run the main job: cluster up, workloads placed and completed, learning, summaries."""
    from megagpu.devcluster import cluster, demo, kubectl
    from megagpu.io import presets
    from megagpu.kube import client as kube_client
    from megagpu.sim import evaluation, runner

    print(
        "== 1. the local control plane: real etcd, kube-apiserver, kube-scheduler, kwok "
        "nodes; megagpu extender, operator and simulated runtime"
    )
    cluster.up(out=lambda line: print(line, flush=True))
    config = cluster.paths().kubeconfig
    print(kubectl.run(config, ["get", "nodes", "-L", "megagpu.io/gpu.product"]).stdout)
    api = kube_client.api_client(config)
    kubectl.run(config, ["delete", "namespace", DEMO_NAMESPACE, "--wait=true"], check=False)
    kubectl.run(config, ["create", "namespace", DEMO_NAMESPACE])
    print(f"== 2. waves of the example GpuWorkloads (examples/workloads) in {DEMO_NAMESPACE}")
    print(
        f"{'wave':>4} {'succeeded':>9} {'failed':>6} {'mean reward':>11} {'seconds':>7}  "
        "modes / backends per type"
    )
    for index in range(args.waves):
        wave = demo.run_wave(api, DEMO_NAMESPACE, index, copies=4)
        print(
            f"{wave.index:>4} {wave.succeeded:>9} {wave.failed:>6} {wave.reward_mean:>11.3f} "
            f"{wave.seconds:>7.1f}  {wave.modes} {wave.by_type}",
            flush=True,
        )
    print(
        kubectl.run(
            config, ["get", "gw", "-n", DEMO_NAMESPACE, "--sort-by", ".metadata.creationTimestamp"]
        ).stdout.splitlines()[-1]
    )
    print(kubectl.run(config, ["get", "gsp", "default"]).stdout)
    print(f"== 3. learning from cold start on real traces (simulator, preset {args.preset})")
    preset = presets.get(args.preset)
    _reward_trend(preset.build(0))
    print("\n== 4. against the schedulers people use (1 seed; make bench-sim runs 5)")
    runs = _run_with_progress(runner, preset.build, list(runner.POLICIES), [0])
    _print_table(
        evaluation.report(
            command="megagpu demo", preset=preset.name, load=preset.load, seeds=[0], runs=runs
        )
    )
    print(f"kubeconfig: {config}  (megagpu dev down stops everything)")
    return 0


def _reward_trend(scenario: Any) -> None:
    from megagpu.devcluster import demo

    print(f"{'jobs done':>10} {'mean reward (last 100)':>24} {'epsilon':>8} {'policy version':>15}")
    for done, mean, epsilon, version in demo.reward_trend(scenario):
        bar = "#" * max(0, int(40 + 40 * mean))
        print(f"{done:>10} {mean:>24.3f} {epsilon:>8.3f} {version:>15}  {bar}")


# --- extender ----------------------------------------------------------------------------
def _load_policy(path: Path | None, mode: str | None = None) -> Any:
    from megagpu.core import qpolicy, qstate

    if path is None:
        return qpolicy.QPolicy(qpolicy.Params(mode=mode or "active"))
    try:
        policy = qstate.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"cannot read the Q-state {path}: {e.strerror}") from e
    except qstate.StateError as e:
        raise UsageError(f"{path}: {e}") from e
    if mode is not None:
        import dataclasses

        policy.params = dataclasses.replace(policy.params, mode=mode)
    return policy


def _extender(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from megagpu.extender import metrics, server
    from megagpu.io import cluster_spec

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    listen = server.Listen(
        args.host, args.port, args.metrics_port, args.tls_cert, args.tls_key, args.metrics_host
    )
    m = metrics.Metrics()
    if args.snapshot:
        nodes = cluster_spec.load(args.snapshot)
        placement = server.snapshot_placement(
            nodes, _load_policy(args.policy_state, args.mode), m, args.seed
        )

        def started() -> None:
            print(
                f"extender (snapshot of {len(nodes)} nodes) on {args.host}:{args.port}, "
                f"metrics on :{args.metrics_port}",
                flush=True,
            )

        asyncio.run(
            server.serve(placement, m, listen, lambda: True, snapshot=True, on_started=started)
        )
        return 0
    from megagpu.extender import cluster

    asyncio.run(
        cluster.run(
            args.kubeconfig, args.namespace, listen, m, _load_policy(args.policy_state), args.seed
        )
    )
    return 0


def _operator(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from megagpu.operator import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(
        run.run(
            args.kubeconfig,
            args.namespace,
            resource_mode=args.resource_mode,
            liveness=args.liveness,
            metrics_listen=_host_port(args.metrics),
        )
    )
    return 0


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _runtime(args: argparse.Namespace) -> int:
    import logging
    import threading

    from megagpu.devcluster import runtime
    from megagpu.kube import client as kube_client

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.time_scale <= 0:
        raise UsageError("--time-scale must be positive")
    sim = runtime.Runtime(kube_client.api_client(args.kubeconfig), args.time_scale)
    runtime.serve_health(sim, args.health_port)
    sim.start()
    threading.Event().wait()
    return 0


def _probe(args: argparse.Namespace) -> int:
    import os
    import time

    from prometheus_client import CollectorRegistry, generate_latest, start_http_server

    from megagpu.probe import collector, cpu, cuda, node, simulated, vulkan

    sources = [cuda.Cuda(), vulkan.Vulkan(), cpu.Cpu()]
    hostname = args.node_name or os.environ.get("NODE_NAME")

    def read() -> node.NodeReading:
        reading = node.read(sources, hostname)
        if args.benchmarks:
            for backend in reading.backends:
                if backend.name == "cuda" and backend.available and backend.devices:
                    backend.benchmarks = cuda.benchmark(0)
                if backend.name == "cpu":
                    backend.benchmarks = cpu.benchmark()
        return reading

    readers = [read]
    if args.simulate:
        from megagpu.io import cluster_spec

        if args.cluster_spec is None:
            raise UsageError("--simulate needs --cluster-spec FILE (the fake nodes)")
        readers = simulated.readers(cluster_spec.load(args.cluster_spec))
    registry = CollectorRegistry()
    registry.register(collector.ProbeCollector(readers[0], dcgm=not args.no_dcgm))
    if args.once:
        if args.format == "json":
            print(
                json.dumps([r().to_json() for r in readers], indent=1)
                if args.simulate
                else json.dumps(read().to_json(), indent=1)
            )
        else:
            print(generate_latest(registry).decode(), end="")
        return 0
    host, port = _host_port(args.listen)
    start_http_server(port, addr=host, registry=registry)
    print(f"probe metrics on http://{host}:{port}/metrics", flush=True)
    publish = None
    if args.publish or args.simulate:
        from kubernetes import client

        from megagpu.kube import client as kube_client
        from megagpu.kube import gpunodes

        custom = client.CustomObjectsApi(kube_client.api_client(args.kubeconfig))

        def publish(reading: node.NodeReading) -> None:
            gpunodes.publish(custom, reading)

    while True:
        for reader in readers:
            if publish is not None:
                try:
                    publish(reader())
                except Exception as e:  # noqa: BLE001 - the API away must not stop the probe
                    print(f"publishing failed, retrying next round: {e}", flush=True)
        time.sleep(args.interval)


def _policy(args: argparse.Namespace) -> int:
    from kubernetes import client

    from megagpu.kube import client as kube_client
    from megagpu.kube import qstore
    from megagpu.operator import tools

    store = qstore.Store(client.CoreV1Api(kube_client.api_client(args.kubeconfig)), args.namespace)
    if args.action == "show":
        print("\n".join(tools.show(store)))
    elif args.action == "reset":
        print(f"reset: version {tools.reset(store)} holds benchmark priors only")
    elif args.action == "export":
        text = tools.export(store)
        if args.output:
            args.output.write_text(text)
            print(f"wrote {args.output}")
        else:
            print(text)
    elif args.action == "import":
        if args.file is None:
            raise UsageError("policy import needs the FILE to import")
        try:
            text = args.file.read_text()
        except OSError as e:
            raise UsageError(f"cannot read {args.file}: {e.strerror}") from e
        print(f"imported as version {tools.import_(store, text)}")
    else:
        print(f"rolled back: version {tools.rollback(store, args.to)} holds the kept values")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from kubernetes import client

    from megagpu.kube import client as kube_client
    from megagpu.operator import tools

    api = kube_client.api_client(args.kubeconfig)
    print(
        "\n".join(
            tools.explain(
                client.CustomObjectsApi(api), client.CoreV1Api(api), args.namespace, args.name
            )
        )
    )
    return 0


def _tui(args: argparse.Namespace) -> int:
    import os

    # Textual waits ESCDELAY ms after Escape for an escape sequence (default 100); keys arrive
    # whole from modern terminals, so 25 ms (curses programs' usual value) keeps Escape quick.
    os.environ.setdefault("ESCDELAY", "25")
    from megagpu.tui.app import MegagpuApp

    if args.refresh <= 0 or args.speed <= 0:
        raise UsageError("--refresh and --speed must be positive")
    if args.source == "sim":
        from megagpu.devcluster.cluster import DEFAULT_SPEC
        from megagpu.io import cluster_spec, presets
        from megagpu.tui.sim_source import SimSource

        spec = args.cluster_spec or DEFAULT_SPEC
        source: Any = SimSource(
            cluster_spec.load(spec),
            presets.mixed_table(),
            title=f"simulation {spec.name}",
            seed=args.seed,
            speed=args.speed,
        )
    else:
        from megagpu.tui.cluster_source import ClusterSource

        source = ClusterSource.connect(args.kubeconfig, args.namespace)
    MegagpuApp(source, refresh_s=args.refresh).run()
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    from kubernetes import client

    from megagpu.kube import client as kube_client
    from megagpu.kube import finalizers

    custom = client.CustomObjectsApi(kube_client.api_client(args.kubeconfig))
    changed, removed = finalizers.clear(custom)
    print(
        f"removed {removed} megagpu finalizers from {changed} GpuWorkloads; "
        "`helm uninstall RELEASE` can now remove the rest"
    )
    return 0
