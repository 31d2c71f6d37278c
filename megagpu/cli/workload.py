"""``megagpu bench-workload``: real compute, reported by the work contract (DESIGN 9.10)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from megagpu.cli.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``bench-workload`` subcommand."""
    from megagpu.workload import kernels, run

    p = sub.add_parser(
        "bench-workload",
        help="do real compute (numpy, cupy or Vulkan) and report the work done",
        description="Check the kernel against numpy at a small size, do the requested work on "
        "the backend and device the pod was given (MEGAGPU_BACKEND, MEGAGPU_DEVICES and the "
        'device plugin\'s variables), and write {"megagpu.io/work": N, ...} as the '
        "termination message.",
    )
    p.add_argument("--kernel", choices=kernels.KERNELS, default="gemm")
    p.add_argument(
        "--work",
        type=float,
        default=1000.0,
        help="amount to do: GFLOP for gemm and attention, GB moved for stream (default 1000)",
    )
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16", "fp64"), default="fp32")
    p.add_argument("--size", type=int, default=0, help="matrix side, floats or sequence length")
    p.add_argument("--backend", help="cpu, cuda or vulkan (default: $MEGAGPU_BACKEND, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument(
        "--termination-log",
        type=Path,
        help=f"where the report goes (default {run.TERMINATION_LOG}, when it exists: the "
        "kubelet creates it in a container)",
    )


def cmd_bench_workload(args: argparse.Namespace) -> int:
    """Run the work; exit 0 with the report, 1 with a one-line reason when it could not."""
    from megagpu.workload import kernels, run

    if not args.work > 0 or args.size < 0:
        raise UsageError("--work must be > 0 and --size >= 0")
    spec = kernels.Spec(args.kernel, args.work, args.precision, args.size, args.seed)
    outcome = run.bench(spec, args.backend or run.default_backend(), os.environ)
    path = args.termination_log
    if path is None and run.TERMINATION_LOG.exists():
        path = run.TERMINATION_LOG
    problem = run.write_message(outcome, path) if path is not None else None
    print(json.dumps(outcome))
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    if not outcome.ok:
        print(f"error: {outcome['error']}", file=sys.stderr)
        return 1
    return 0
