"""``megagpu dev`` and ``megagpu demo``: the local control plane and the main job end to end."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from megagpu.cli.components import cmd_runtime
from megagpu.cli.simulate import print_table, run_with_progress


def cmd_dev(args: argparse.Namespace) -> int:
    """``megagpu dev up | down | status | kubeconfig | build | image | runtime``."""
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
            real_nodes=args.real_nodes,
            out=out,
        )
        return 0
    if args.dev_command == "runtime":
        return cmd_runtime(args)
    if args.dev_command == "down":
        cluster.down(out=out)
        return 0
    if args.dev_command == "build":
        spent = binaries.ensure(out)
        state = f"built in {spent:.0f}s" if spent else "cached"
        out(f"binaries in {binaries.bin_dir()} ({state})")
        return 0
    if args.dev_command == "image":
        return _dev_image(args.no_load, out)
    if args.dev_command == "status":
        problems = cluster.problems(cluster.paths())
        for line in problems:
            out(line)
        if not problems:
            for line in cluster.real_node_lines(cluster.paths()):
                out(line)
            out(f"dev cluster is up and ready; kubeconfig: {cluster.paths().kubeconfig}")
        return 1 if problems else 0
    print(cluster.kubeconfig())
    return 0


def _dev_image(no_load: bool, out: Callable[[str], None]) -> int:
    """Build the images (cached), then load them into every real node that runs."""
    from megagpu.devcluster import binaries, cluster, images

    archives = images.build_all(out)
    sockets = [] if no_load else cluster.real_node_sockets()
    if sockets:
        images.load_all(archives, binaries.binary("ctr"), sockets, out)
    elif not no_load:
        out("no real node runs, so nothing was loaded (megagpu dev up --real-nodes N loads them)")
    return 0


DEMO_NAMESPACE = "megagpu-demo"


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the main job: cluster up, workloads placed and completed, learning, summaries."""
    from megagpu.devcluster import cluster, demo, kubectl
    from megagpu.io import presets
    from megagpu.kube import client as kube_client
    from megagpu.sim import evaluation, runner

    print(
        "== 1. the local control plane: real etcd, kube-apiserver, kube-scheduler, kwok "
        "nodes; megagpu extender, operator and simulated runtime"
    )
    cluster.up(real_nodes=1, out=lambda line: print(line, flush=True))
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
    runs = run_with_progress(runner, preset.build, list(runner.POLICIES), [0])
    print_table(
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
