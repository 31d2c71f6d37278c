"""The ``megagpu`` command: the only composition root (plots and progress bars live here)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from megagpu.cli import cluster, components, execute, simulate, tools, workload
from megagpu.cli.errors import UsageError


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
        "--real-nodes",
        type=int,
        default=0,
        metavar="N",
        help="also run N real nodes (kubelet + containerd on this machine; needs root)",
    )
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
    img = devsub.add_parser(
        "image",
        help="build localhost/megagpu:dev (the Dockerfile, no Docker daemon), kube-scheduler and"
        " pause images; load them into every running real node",
    )
    img.add_argument("--no-load", action="store_true", help="build (or reuse) only")

    ext = sub.add_parser(
        "extender",
        help="serve the scheduler extender (filter, prioritize, bind) with the learned Q-policy",
    )
    source = ext.add_mutually_exclusive_group()
    source.add_argument(
        "--kubeconfig",
        type=Path,
        help="serve a cluster (watches its state; default: in-cluster service account)",
    )
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
    ext.add_argument(
        "--max-wait-seconds",
        type=float,
        default=30 * 86400.0,
        help="longest a pod is kept pending for a busy, faster node, from its first wait "
        "(each pod also at most its own predicted run time on the best free node)",
    )
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
    op.add_argument(
        "--queue-by-size",
        action="store_true",
        help="within a priority, shorter predicted run times first (needs the PriorityClasses "
        "megagpu-<priority>-q0..q8 the chart and megagpu dev make)",
    )
    op.add_argument("--liveness", default="http://127.0.0.1:8081/healthz")
    op.add_argument("--metrics", default="127.0.0.1:8080", help="HOST:PORT of /metrics")
    pr = sub.add_parser("probe", help="probe CUDA, Vulkan and CPU devices; DCGM-style metrics")
    pr.add_argument("--once", action="store_true", help="print one reading and exit")
    pr.add_argument("--format", choices=("json", "prometheus"), default="json")
    pr.add_argument("--benchmarks", action="store_true", help="run short GEMM/copy benchmarks")
    pr.add_argument(
        "--benchmark-every",
        type=float,
        default=3600.0,
        help="with --benchmarks: seconds between runs per idle device (first run at start)",
    )
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
    pr.add_argument(
        "--recover-after",
        type=float,
        default=60.0,
        help="seconds a failed device must read healthy before it is used again",
    )
    pr.add_argument(
        "--resource-mode",
        choices=("megagpu", "vendor"),
        default="megagpu",
        help="megagpu: advertise megagpu.io/gpu on the Node; vendor: the device plugin does",
    )
    pr.add_argument(
        "--device-plugin",
        action="store_true",
        help="serve the kubelet device plugin for megagpu.io/gpu (the kubelet then advertises it)",
    )
    pr.add_argument(
        "--kubelet-dir",
        default="/var/lib/kubelet",
        help="the kubelet's --root-dir: its pod-resources/kubelet.sock is read by Allocate",
    )
    pr.add_argument(
        "--device-plugin-dir",
        default="/var/lib/kubelet/device-plugins",
        help="where the kubelet's kubelet.sock is (fixed in the kubelet, whatever its root dir)",
    )
    pr.add_argument("--cdi", action="store_true", help="hand NVIDIA GPUs over as CDI names")
    pr.add_argument(
        "--simulated-devices",
        type=int,
        default=0,
        metavar="N",
        help="N simulated devices (character devices in --sim-dir) on a node without GPUs",
    )
    pr.add_argument("--simulated-backend", choices=("cuda", "vulkan"), default="cuda")
    pr.add_argument("--simulated-class", default="sim", help="device class (gpu.product label)")
    pr.add_argument("--simulated-memory-mib", type=int, default=16384, help="per device")
    pr.add_argument("--sim-dir", default="/dev/megagpu-sim", help="where simulated devices live")
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
    crd = sub.add_parser("crds", help="apply megagpu's CRDs server-side (the chart's upgrade hook)")
    crd.add_argument("action", choices=("apply",))
    crd.add_argument("--dir", type=Path, default=Path("crds"), help="directory of CRD YAML")
    crd.add_argument("--kubeconfig", type=Path, help="default: in-cluster, then $KUBECONFIG")
    uni = sub.add_parser("uninstall", help="clear megagpu finalizers (before helm uninstall)")
    uni.add_argument("--kubeconfig", type=Path, help="default: in-cluster, then $KUBECONFIG")
    workload.add_parser(sub)
    ex = sub.add_parser(
        "exec",
        help="run a command that uses only the pod's assigned devices (CUDA_VISIBLE_DEVICES...)",
        usage="megagpu exec [-h] -- CMD [ARG ...]",
        description="Set the variables each runtime reads (CUDA_VISIBLE_DEVICES and"
        " CUDA_DEVICE_ORDER for cuda, GGML_VK_VISIBLE_DEVICES for vulkan, none for metal and cpu)"
        " from MEGAGPU_BACKEND and MEGAGPU_DEVICES, then replace this process with CMD.",
        epilog="Exit status: CMD's own; 127 when CMD is not found, 126 when it cannot run, 2 when"
        " MEGAGPU_BACKEND or MEGAGPU_DEVICES is missing or malformed.",
    )
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.command_line = "megagpu " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 2
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "sim": simulate.cmd_sim,
        "dev": cluster.cmd_dev,
        "demo": cluster.cmd_demo,
        "extender": components.cmd_extender,
        "operator": components.cmd_operator,
        "probe": components.cmd_probe,
        "policy": tools.cmd_policy,
        "explain": tools.cmd_explain,
        "tui": tools.cmd_tui,
        "uninstall": tools.cmd_uninstall,
        "crds": tools.cmd_crds,
        "bench-workload": workload.cmd_bench_workload,
        "exec": execute.cmd_exec,
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
