import random

import numpy as np
import pytest

from megagpu.core import baselines, fleet, learned, model, ports, qpolicy, waiting
from megagpu.sim import evaluation, hardware, runner, simulator
from tests.helpers import node

TABLE = hardware.ThroughputTable(
    [
        hardware.ThroughputRow("m", "fast", "cuda", 1, 10.0),
        hardware.ThroughputRow("m", "slow", "cuda", 1, 2.0),
    ]
)
NODES = (node("fast-0", "fast", devices=1), node("slow-0", "slow", devices=1))


def job(uid: str, at: float, work: float) -> simulator.Job:
    w = model.Workload(
        uid=uid,
        workload_type="training",
        model="m",
        gpus=1,
        work=work,
        declared=model.Work(work),
    )
    return simulator.Job(at, w)


def two_jobs() -> simulator.Scenario:
    """a holds the fast device until 10 s; b (1 s) runs 10 s there or 50 s on the slow one."""
    return simulator.Scenario(NODES, (job("a", 0.0, 100.0), job("b", 1.0, 100.0)), TABLE)


def by_uid(result: simulator.RunResult) -> dict[str, simulator.JobRecord]:
    return {r.uid: r for r in result.records}


def test_earliest_finish_waits_for_the_busy_faster_device():
    b = by_uid(simulator.simulate(two_jobs(), runner.factory("earliest_finish"), 0))["b"]
    assert (b.node, b.start_s, b.finish_s) == ("fast-0", 10.0, 20.0)
    assert b.waited_s == pytest.approx(9.0) and b.predicted_s == pytest.approx(10.0)
    greedy = by_uid(simulator.simulate(two_jobs(), runner.factory("oracle_greedy"), 0))["b"]
    assert (greedy.node, greedy.start_s) == ("slow-0", 1.0)


def test_earliest_finish_does_not_wait_when_the_free_device_finishes_first():
    sc = simulator.Scenario(NODES, (job("a", 0.0, 1000.0), job("b", 1.0, 100.0)), TABLE)
    b = by_uid(simulator.simulate(sc, runner.factory("earliest_finish"), 0))["b"]
    assert (b.node, b.start_s, b.waited_s) == ("slow-0", 1.0, 0.0)


def test_earliest_finish_never_waits_for_a_device_that_frees_after_its_bound():
    result = simulator.simulate(two_jobs(), runner.factory("earliest_finish"), 0, max_wait_s=4.0)
    b = by_uid(result)["b"]
    assert (b.node, b.start_s, b.waited_s) == ("slow-0", 1.0, 0.0)


class AlwaysWaits:
    """Waits for the first busy row whenever it may; else the first free row."""

    name = "always_waits"
    waits = True

    def choose(self, w: model.Workload, view: fleet.View, rng: random.Random) -> ports.Choice:
        if view.wait_left_s > 0 and len(view.busy_rows):
            return ports.Choice(int(view.busy_rows[0]), "wait", np.zeros(len(view.rows)), wait=True)
        return ports.Choice(int(view.rows[0]), "exploit", np.zeros(len(view.rows)))

    def observe(self, outcome: model.Outcome) -> bool:
        return False


class WaitsRegardless(AlwaysWaits):
    name = "waits_regardless"

    def choose(self, w: model.Workload, view: fleet.View, rng: random.Random) -> ports.Choice:
        return ports.Choice(0, "wait", np.zeros(len(view.rows)), wait=True)


def test_the_bound_holds_whatever_the_policy_wants():
    sc = simulator.Scenario(NODES, (job("a", 0.0, 1000.0), job("b", 1.0, 100.0)), TABLE)
    result = simulator.simulate(sc, lambda _: AlwaysWaits(), 0, max_wait_s=30.0)
    b = by_uid(result)["b"]
    assert (b.node, b.start_s, b.waited_s) == ("slow-0", 31.0, 30.0)
    with pytest.raises(ports.WaitError):
        simulator.simulate(sc, lambda _: WaitsRegardless(), 0, max_wait_s=30.0)


def busy_trace(jobs: int = 300) -> simulator.Scenario:
    rng = np.random.default_rng(1)
    arrivals = np.cumsum(rng.exponential(12.0, jobs))
    works = rng.lognormal(4.5, 1.0, jobs)
    return simulator.Scenario(
        NODES,
        tuple(
            job(f"j{i}", float(t), float(w))
            for i, (t, w) in enumerate(zip(arrivals, works, strict=True))
        ),
        TABLE,
    )


def test_learned_waits_and_never_past_its_bound():
    sc = busy_trace()
    bound = 60.0
    make = runner.factory("learned", settings=waiting.Settings(max_wait_s=bound))
    result = simulator.simulate(sc, make, 0, max_wait_s=bound)  # a wait past it raises
    waited = [r for r in result.records if r.waited_s > 0]
    assert waited, "learned never waited on a trace where the fast device is worth waiting for"
    assert all(r.predicted_s is not None for r in result.records[50:])


def test_prediction_error_is_reported_per_run():
    sc = busy_trace()
    oracle = simulator.simulate(sc, runner.factory("oracle_greedy"), 0)
    exact = evaluation.metrics(simulator.simulate(sc, runner.factory("earliest_finish"), 0), oracle)
    assert exact["prediction_mdape"] == pytest.approx(0.0, abs=1e-6)
    assert evaluation.metrics(oracle, oracle)["prediction_mdape"] is None
    learned_run = evaluation.metrics(simulator.simulate(sc, runner.factory("learned"), 0), oracle)
    assert learned_run["prediction_mdape"] is not None and learned_run["prediction_mdape"] >= 0


def test_waiting_policies_conform():
    _e: ports.Policy = baselines.EarliestFinishPolicy(lambda w, r: 1.0)
    _l: ports.Policy = learned.LearnedPolicy(qpolicy.QPolicy())
