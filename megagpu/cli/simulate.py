"""``megagpu sim`` and ``megagpu sim convert``: tables, progress bars and plots."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from megagpu.cli.errors import UsageError


def cmd_sim(args: argparse.Namespace) -> int:
    """``megagpu sim``: run the policies over a preset or given files and report."""
    from megagpu.io import presets

    if args.sim_command == "convert":
        return cmd_convert(args)
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
    runs = run_with_progress(runner, build, policies, seeds)
    doc = evaluation.report(
        command=args.command_line, preset=preset_name, load=load, seeds=seeds, runs=runs
    )
    print_table(doc)
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


def run_with_progress(
    runner: Any, build: Any, policies: list[str], seeds: list[int]
) -> list[tuple[str, int, dict[str, Any]]]:
    """Run every policy and seed with a progress bar."""
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


def print_table(doc: dict[str, Any]) -> None:
    """The report's summary as a table."""
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


def cmd_convert(args: argparse.Namespace) -> int:
    """``megagpu sim convert``: upstream data to megagpu's formats."""
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
