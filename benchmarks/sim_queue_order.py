"""What ordering the queue by job size would be worth (issue 18), measured in the simulator.

The waiting rule decides *where* a job goes and whether it holds out for a busy node; the order
in which pending jobs are offered is kube-scheduler's (priority, then arrival). At high load the
average JCT depends mostly on that order. This measures, on the report seeds of ``make bench-sim``:

- ``arrival``: the queue as kube-scheduler keeps it without megagpu's size classes;
- ``true size``: shortest first by the job's true run time on its fastest device (a reference,
  as ``oracle_greedy`` and ``earliest_finish`` are: no scheduler knows it);
- ``predicted``: learned as it runs (sim.md, and the operator with ``--queue-by-size``): by the
  size bucket (``predict.queue_bucket``) of its own predicted run time on its fastest device
  when the job arrives; a job it cannot predict queues in the middle bucket.

The key is read once, at arrival, so a long job can wait behind every shorter one that comes
later: the p99 JCT and the p95 queue time show what that costs. Writes
benchmarks/results/sim-queue-order.json and .md. Run: python benchmarks/sim_queue_order.py.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from megagpu.core import fleet, ports  # noqa: E402
from megagpu.io import presets  # noqa: E402
from megagpu.sim import evaluation, runner, simulator  # noqa: E402

SEEDS = list(range(5))
PRESETS = ("gavel-0.7", "gavel-0.5", "gavel-0.3")
RESULTS = Path(__file__).parent / "results"
RUNS = (
    ("oracle_greedy", "arrival"),
    ("oracle_greedy", "true size"),
    ("earliest_finish", "arrival"),
    ("earliest_finish", "true size"),
    ("learned", "arrival"),
    ("learned", "predicted"),
)


def true_size(scenario: simulator.Scenario) -> simulator.QueueOrder:
    """Shortest first by the true run time on the job's fastest device."""
    f = fleet.Fleet.build(scenario.nodes)

    def key(policy: ports.Policy, job: simulator.Job) -> float:
        thr, _ = scenario.table.arrays(f, job.workload.model, job.workload.gpus)
        best = float(thr.max()) if len(thr) else 0.0
        return job.workload.work / best if best > 0 else math.inf

    return key


def arrival(scenario: simulator.Scenario) -> simulator.QueueOrder:
    """Every job the same rank: arrival order (learned's own ranking off)."""
    return lambda policy, job: 0.0


ORDERS = {"arrival": arrival, "true size": true_size, "predicted": None}


def measure(name: str) -> dict[str, Any]:
    """Average, p99 JCT and p95 queue of each (policy, order) over ``oracle_greedy``'s (arrival)."""
    preset = presets.get(name)
    found: dict[str, dict[str, list[float]]] = {}
    for seed in SEEDS:
        scenario = preset.build(seed)
        oracle = simulator.simulate(scenario, runner.factory("oracle_greedy"), seed)
        base = evaluation.metrics(oracle, oracle)
        for policy, order in RUNS:
            make = ORDERS[order]
            run = simulator.simulate(
                scenario,
                runner.factory(policy),
                seed,
                queue_order=None if make is None else make(scenario),  # None: the policy's
            )
            m = evaluation.metrics(run, oracle)
            row = found.setdefault(f"{policy} / {order}", {})
            row.setdefault("avg", []).append(m["avg_jct_s"] / base["avg_jct_s"])
            row.setdefault("p99", []).append(m["p99_jct_s"] / base["p99_jct_s"])
            row.setdefault("p95_queue_h", []).append(m["p95_queue_s"] / 3600)
    return {
        label: {k: float(np.mean(v)) for k, v in row.items()} | {"avg_per_seed": row["avg"]}
        for label, row in found.items()
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        "# Queue order by job size (simulator)\n",
        f"{common.provenance(result)}. Seeds {SEEDS}, the "
        "report seeds of sim.md. Ratios are over oracle_greedy's with the queue in arrival "
        "order, per seed, then averaged. `true size`: shortest first by the true run time on "
        "the job's fastest device (a reference: no scheduler knows it); `predicted`: learned as "
        "it runs, by the size bucket of its own prediction at arrival (unpredictable jobs in the "
        "middle bucket). The key is read once, at arrival: nothing ages, so long jobs can wait "
        "behind later short ones.\n",
    ]
    for name, rows in result["presets"].items():
        lines += [
            f"\n## {name}\n",
            "| policy / queue order | avg JCT / oracle_greedy | per seed | p99 JCT / "
            "oracle_greedy | p95 queue (h) |",
            "|---|---|---|---|---|",
        ]
        for label, row in rows.items():
            seeds = ", ".join(f"{x:.2f}" for x in row["avg_per_seed"])
            lines.append(
                f"| {label} | {row['avg']:.3f} | {seeds} | {row['p99']:.3f} "
                f"| {row['p95_queue_h']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    result: dict[str, Any] = {**common.header(), "seeds": SEEDS, "presets": {}}
    for name in PRESETS:
        result["presets"][name] = measure(name)
        print(name, json.dumps(result["presets"][name]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sim-queue-order.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "sim-queue-order.md").write_text(report(result))
    print(report(result))


if __name__ == "__main__":
    main()
