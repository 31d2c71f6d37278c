"""Speed of the learning core and the simulator (issue 3).

Writes benchmarks/results/sim-speed.json. Run: make bench-sim.
Goals: scoring 1,000 candidate nodes < 1 ms; an update from a 64-sample minibatch < 2 ms;
100,000 jobs on a 500-node cluster < 60 s with least_allocated and < 300 s with learned.
Also measured (issue 18): a decision of learned with predictions and waiting over 1,000 nodes,
600 of them busy (each running one job), the fastest 200 among them.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from megagpu.core import fleet, learned, model, qpolicy, scoring  # noqa: E402
from megagpu.io import devices, presets  # noqa: E402
from megagpu.sim import runner, simulator  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def nodes(count: int) -> list[model.Node]:
    kinds = ("v100", "p100", "k80", "a100", "t4")
    groups = [devices.group(k, count // len(kinds), k, 8) for k in kinds]
    from megagpu.io import cluster_spec

    return cluster_spec.parse({"nodes": groups})


def per_call_ms(fn, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"p50_ms": statistics.median(times), "p99_ms": times[int(0.99 * (len(times) - 1))]}


def scoring_1000() -> dict[str, float]:
    cluster = nodes(1000)
    f = fleet.Fleet.build(cluster)
    policy = qpolicy.QPolicy()
    w = model.Workload(uid="w", workload_type="training", model="resnet-50-bs64", gpus=1)
    free = np.asarray([n.slots for n in cluster])
    view = fleet.View(f, f.feasible_rows(w, free), free, 3)
    rng = random.Random(0)

    def decide() -> None:
        choice = policy.choose(w, view, rng)
        scoring.scores(choice.values, int(np.flatnonzero(view.rows == choice.row)[0]))

    decide()
    return per_call_ms(decide, 300)


def predict_and_wait_1000() -> dict[str, float]:
    """One learned decision with predictions and the wait decision, 400 free and 600 busy nodes."""
    cluster = nodes(1000)
    f = fleet.Fleet.build(cluster)
    policy = learned.LearnedPolicy()
    for i, node in enumerate(cluster[:: len(cluster) // 5]):
        w = model.Workload(uid=f"o{i}", workload_type="training", model="resnet-50-bs64", gpus=1)
        policy.observe(
            model.Outcome(
                uid=w.uid,
                workload=w,
                node=node.name,
                backend="cuda",
                device_class=node.device_class,
                duration_s=100.0 * (i + 1),
                work=1000.0,
                work_source="reported",
            )
        )
    w = model.Workload(
        uid="w",
        workload_type="training",
        model="resnet-50-bs64",
        gpus=1,
        declared=model.Work(1000.0),
    )
    # the fastest class (the first 200 nodes) is all busy, so that every one is a candidate
    free = np.asarray([n.slots if i % 2 and i >= 200 else 0 for i, n in enumerate(cluster)])
    full = np.asarray([n.slots for n in cluster])
    rows = f.feasible_rows(w, free)
    busy = np.setdiff1d(f.feasible_rows(w, full), rows)
    running = {int(f.row_node[r]): [fleet.Running(w, int(r), 0.0, 8, None)] for r in busy.tolist()}
    view = fleet.View(
        f, rows, free, 3, busy_rows=busy, running=running, now_s=50.0, wait_left_s=3600.0
    )
    rng = random.Random(0)
    policy.choose(w, view, rng)
    return per_call_ms(lambda: policy.choose(w, view, rng), 300)


def update_64() -> dict[str, float]:
    policy = qpolicy.QPolicy(qpolicy.Params(replay_batch=64, replay_capacity=4096))
    rng = random.Random(0)
    outcomes = []
    for i in range(5000):
        w = model.Workload(
            uid=f"u{i}", workload_type="training", model=f"m{i % 20}", gpus=1 + i % 4, work=100.0
        )
        dev = ("v100", "p100", "k80")[i % 3]
        outcomes.append(
            model.Outcome(
                uid=w.uid,
                workload=w,
                node="n",
                backend="cuda",
                device_class=dev,
                duration_s=10 + rng.random() * 10,
                work=w.work,
                work_source="reported",
            )
        )
    for o in outcomes[:4096]:
        policy.observe(o)
    it = iter(outcomes[4096:])
    return per_call_ms(lambda: policy.observe(next(it)), 800)


def big_run(policy: str) -> float:
    cluster = nodes(500)
    table = presets.training_table()
    jobs = presets.philly_jobs(cluster, table, 0.5, 0, 100_000)
    scenario = simulator.Scenario(tuple(cluster), tuple(jobs), table)
    start = time.perf_counter()
    result = simulator.simulate(scenario, runner.factory(policy), 0)
    spent = time.perf_counter() - start
    print(f"{policy}: {len(result.records)} jobs in {spent:.1f}s", flush=True)
    return spent


def main() -> None:
    results = {
        **common.header(),
        "score_1000_nodes": scoring_1000(),
        "predict_and_wait_1000_nodes": predict_and_wait_1000(),
        "update_minibatch_64": update_64(),
        "jobs_100k_nodes_500_seconds": {p: big_run(p) for p in ("least_allocated", "learned")},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sim-speed.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
