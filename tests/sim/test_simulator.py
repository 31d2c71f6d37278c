import dataclasses

import numpy as np
import pytest

from megagpu.core import baselines, model, qpolicy
from megagpu.io import presets
from megagpu.sim import evaluation, hardware, runner, simulator
from tests.helpers import node


def tiny(jobs: int = 40) -> simulator.Scenario:
    nodes = (node("fast-0", "fast", devices=2), node("slow-0", "slow", devices=2))
    table = hardware.ThroughputTable(
        [
            hardware.ThroughputRow("m", "fast", "cuda", 1, 10.0),
            hardware.ThroughputRow("m", "slow", "cuda", 1, 2.0),
            hardware.ThroughputRow("m", "fast", "cuda", 2, 18.0),
        ]
    )
    rng = np.random.default_rng(0)
    arrivals = np.cumsum(rng.exponential(5.0, jobs))
    js = tuple(
        simulator.Job(
            float(t),
            model.Workload(
                uid=f"j{i}", workload_type="training", model="m", gpus=1 + (i % 5 == 0), work=100.0
            ),
        )
        for i, t in enumerate(arrivals)
    )
    return simulator.Scenario(nodes, js, table)


def test_same_seed_same_trajectory():
    sc = presets.get("gavel-0.5").build(1)
    a = simulator.simulate(sc, runner.factory("learned"), 3)
    b = simulator.simulate(sc, runner.factory("learned"), 3)
    assert a.records == b.records


def test_every_job_runs_once_and_capacity_is_respected():
    sc = tiny()
    result = simulator.simulate(sc, runner.factory("random"), 0)
    assert sorted(r.uid for r in result.records) == sorted(j.workload.uid for j in sc.jobs)
    for name in ("fast-0", "slow-0"):
        events = sorted(
            [(r.start_s, r.slots) for r in result.records if r.node == name]
            + [(r.finish_s, -r.slots) for r in result.records if r.node == name],
            key=lambda e: (e[0], e[1]),
        )
        assert max(np.cumsum([e[1] for e in events])) <= 2


def test_missing_throughput_row_means_it_cannot_run_there():
    result = simulator.simulate(tiny(), runner.factory("least_allocated"), 0)
    assert all(r.node == "fast-0" for r in result.records if r.slots == 2)


def test_durations_follow_the_hardware_model():
    result = simulator.simulate(tiny(), runner.factory("random"), 0)
    for r in result.records:
        if r.slots == 1:
            expected = 100.0 / (10.0 if r.node == "fast-0" else 2.0)
            assert r.finish_s - r.start_s == pytest.approx(expected)


def test_priority_then_arrival_order():
    nodes = (node("only-0", "fast", devices=1),)
    table = hardware.ThroughputTable([hardware.ThroughputRow("m", "fast", "cuda", 1, 1.0)])
    jobs = tuple(
        simulator.Job(
            0.0 if i == 0 else 1.0,
            model.Workload(
                uid=f"j{i}",
                workload_type="training",
                model="m",
                gpus=1,
                work=10.0,
                priority=("normal", "low", "critical")[i],
            ),
        )
        for i in range(3)
    )
    result = simulator.simulate(simulator.Scenario(nodes, jobs, table), runner.factory("random"), 0)
    order = [r.uid for r in sorted(result.records, key=lambda r: r.start_s)]
    assert order == ["j0", "j2", "j1"]


def test_a_queue_order_replaces_arrival_within_a_priority():
    nodes = (node("only-0", "fast", devices=1),)
    table = hardware.ThroughputTable([hardware.ThroughputRow("m", "fast", "cuda", 1, 1.0)])

    def job(i: int, arrival_s: float, work: float, priority: str = "normal") -> simulator.Job:
        w = model.Workload(f"j{i}", "training", "m", 1, work=work, priority=priority)
        return simulator.Job(arrival_s, w)

    # j0 holds the node; then a long, a short, and a long critical one arrive
    jobs = (job(0, 0.0, 10.0), job(1, 1.0, 50.0), job(2, 2.0, 5.0), job(3, 3.0, 40.0, "critical"))
    scenario = simulator.Scenario(nodes, jobs, table)

    def started(order: simulator.QueueOrder | None) -> list[str]:
        result = simulator.simulate(scenario, runner.factory("random"), 0, queue_order=order)
        return [r.uid for r in sorted(result.records, key=lambda r: r.start_s)]

    assert started(None) == ["j0", "j3", "j1", "j2"]
    assert started(lambda policy, job: job.workload.work) == ["j0", "j3", "j2", "j1"]

    class Ranking(baselines.RandomPolicy):  # a policy that ranks its queue, as learned does
        def queue_rank(self, workload: model.Workload) -> float:
            return workload.work

    ranked = simulator.simulate(scenario, lambda _: Ranking(), 0)
    assert [r.uid for r in sorted(ranked.records, key=lambda r: r.start_s)] == [
        "j0",
        "j3",
        "j2",
        "j1",
    ]


def test_slowdown_and_join_change_the_cluster_midway():
    base = tiny(80)
    middle = base.jobs[40].arrival_s
    newcomer = node("new-0", "new", devices=2)
    table = hardware.ThroughputTable(
        [*base.table.rows, hardware.ThroughputRow("m", "new", "cuda", 1, 50.0)]
    )
    sc = dataclasses.replace(
        base,
        nodes=(*base.nodes, newcomer),
        table=table,
        slowdowns=(simulator.Slowdown(middle, "fast", 0.5),),
        joins={"new-0": middle},
    )
    result = simulator.simulate(sc, runner.factory("oracle_greedy"), 0)
    assert all(r.start_s >= middle for r in result.records if r.node == "new-0")
    assert any(r.node == "new-0" for r in result.records)
    late_fast = [
        r for r in result.records if r.node == "fast-0" and r.slots == 1 and r.start_s >= middle
    ]
    assert all(r.finish_s - r.start_s == pytest.approx(20.0) for r in late_fast)


def test_oracle_beats_random_and_metrics_are_finite():
    sc = tiny(200)
    oracle = simulator.simulate(sc, runner.factory("oracle_greedy"), 0)
    rand = simulator.simulate(sc, runner.factory("random"), 0)
    m = evaluation.metrics(rand, oracle)
    assert evaluation.metrics(oracle, oracle)["avg_jct_s"] < m["avg_jct_s"]
    assert 0 < m["utilization"] <= 1
    evaluation._check_finite(m)


def test_empty_trace_is_an_error():
    sc = tiny()
    with pytest.raises(model.ValidationError, match="empty"):
        dataclasses.replace(sc, jobs=())


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_runs(name):
    sc = presets.get(name).build(0)
    sc = dataclasses.replace(sc, jobs=sc.jobs[:150])
    for policy in ("least_allocated", "learned"):
        result = simulator.simulate(sc, runner.factory(policy), 0)
        assert len(result.records) + result.unplaced == len(sc.jobs)
        assert len(result.records) > 0


def test_report_has_the_contract_keys():
    runs = runner.run(lambda s: tiny(150), ["least_allocated", "learned"], [0, 1])
    doc = evaluation.report(command="test", preset=None, load=None, seeds=[0, 1], runs=runs)
    assert doc["schema"] == "megagpu.sim.report/v1"
    for row in doc["summary"].values():
        assert set(evaluation.METRICS) <= set(row) and len(row["ci95_avg_jct_s"]) == 2
    assert {r["policy"] for r in doc["runs"]} == {"least_allocated", "learned"}


def test_decisions_to_within_counts_from_the_first_good_window():
    sc = tiny(800)
    oracle = simulator.simulate(sc, runner.factory("oracle_greedy"), 0)
    assert evaluation.decisions_to_within(oracle, oracle) == evaluation.WINDOW
    learned = simulator.simulate(sc, lambda _: qpolicy.QPolicy(), 0)
    found = evaluation.decisions_to_within(learned, oracle)
    assert found is None or found >= evaluation.WINDOW


def test_size_presets_tell_the_learner_what_production_would():
    unsized = presets.get("philly-unsized").build(0).jobs
    sources = [j.work_source for j in unsized]
    assert set(sources) == {"reported", "none"} and 0.4 < sources.count("none") / len(sources) < 0.6
    assert all(j.workload.declared is None for j in unsized)
    noisy = presets.get("philly-noisy").build(0).jobs
    ratios = [j.told_work / j.workload.work for j in noisy]
    assert {j.work_source for j in noisy} == {"declared"}
    assert 0.5 <= min(ratios) < 0.6 and 1.8 < max(ratios) <= 2.0


def test_the_learner_is_told_nothing_of_an_unsized_job():
    seen = []
    base = presets.get("philly-unsized").build(0)
    sc = dataclasses.replace(base, jobs=base.jobs[:100])

    class Spy(baselines.LeastAllocatedPolicy):
        def observe(self, outcome):
            seen.append(outcome)
            return super().observe(outcome)

    simulator.simulate(sc, lambda _: Spy(), 0)
    told = {j.workload.uid: j.told_work for j in sc.jobs}
    assert seen and all(o.work == told[o.uid] for o in seen)
    assert any(o.work is None and o.throughput == 0.0 for o in seen)
