import dataclasses
import math
import random

import numpy as np
import pytest

from megagpu.core import baselines, calibration, features, model, ports, qpolicy
from tests.helpers import node, view, workload

_: ports.Policy = qpolicy.QPolicy()
FAST = node("fast-0", "v100", fp16=200.0, gbps=2000.0)
SLOW = node("slow-0", "p100", fp16=100.0, gbps=1000.0)


def outcome(uid: str, w: model.Workload, n: model.Node, throughput: float) -> model.Outcome:
    return model.Outcome(
        uid=uid,
        workload=w,
        node=n.name,
        backend="cuda",
        device_class=n.device_class,
        duration_s=w.work / throughput,
        work=w.work,
        work_source="reported",
    )


def no_replay(**kw: object) -> qpolicy.QPolicy:
    return qpolicy.QPolicy(qpolicy.Params(replay_batch=0, **kw))  # type: ignore[arg-type]


def test_prior_prefers_the_faster_benchmark():
    policy = no_replay(epsilon_start=0.0, epsilon_min=0.0)
    w = workload(work=100.0)
    v = view([SLOW, FAST], w)
    values = policy.values(w, v)
    assert values[1] > values[0]
    assert math.isclose(values[1] - values[0], math.log(2), abs_tol=1e-3)
    assert policy.choose(w, v, random.Random(0)).row == 1


def test_hand_computed_q_update():
    policy = no_replay()
    w = workload(work=100.0)
    policy.values(w, view([SLOW, FAST], w))  # learn the fleet's benchmarks
    wkey, mkey = policy.keys(w)
    policy.observe(outcome("a", w, SLOW, 5.0))
    assert math.isclose(policy.value(wkey, mkey, "cuda/p100"), math.log(0.5), abs_tol=1e-9)
    policy.observe(outcome("b", w, FAST, 20.0))
    assert math.isclose(policy.reference(wkey, mkey), 20.0)
    policy.observe(outcome("c", w, SLOW, 5.0))
    # r = log(5 / 20); Q <- Q + 0.3 (r - Q) from Q = log(0.5)
    expected = math.log(0.5) + 0.3 * (math.log(5 / 20) - math.log(0.5))
    assert math.isclose(policy.value(wkey, mkey, "cuda/p100"), expected, abs_tol=1e-9)


def test_learns_when_the_benchmarks_are_wrong():
    policy = qpolicy.QPolicy(qpolicy.Params(epsilon_start=0.3, epsilon_min=0.3))
    rng = random.Random(4)
    w = workload(work=100.0)
    v = view([SLOW, FAST], w)
    truth = {0: 10.0, 1: 4.0}  # the "slow" device is really 2.5x faster
    for i in range(60):
        row = policy.choose(w, v, rng).row
        policy.observe(outcome(f"u{i}", w, [SLOW, FAST][row], truth[row]))
    policy.params = qpolicy.Params(epsilon_start=0.0, epsilon_min=0.0)
    assert policy.choose(w, v, rng).row == 0


def test_each_outcome_is_learned_once():
    policy = no_replay()
    w = workload(work=100.0)
    assert policy.observe(outcome("same", w, SLOW, 5.0))
    before = policy.updates
    assert not policy.observe(outcome("same", w, SLOW, 1.0))
    assert policy.updates == before


def test_frozen_neither_explores_nor_learns():
    policy = qpolicy.QPolicy(qpolicy.Params(mode="frozen", epsilon_start=1.0, epsilon_min=1.0))
    w = workload(work=100.0)
    v = view([SLOW, FAST], w)
    assert policy.epsilon == 0.0
    assert all(policy.choose(w, v, random.Random(i)).row == 1 for i in range(20))
    assert not policy.observe(outcome("x", w, SLOW, 5.0))


def test_shadow_follows_the_baseline_and_reports_regret():
    policy = qpolicy.QPolicy(
        qpolicy.Params(mode="shadow", epsilon_start=0.0, epsilon_min=0.0),
        baseline=baselines.LeastAllocatedPolicy(),
    )
    w = workload(work=100.0)
    v = view([SLOW, FAST], w, free=[4, 1])
    choice = policy.choose(w, v, random.Random(0))
    assert choice.row == 0 and choice.learned_row == 1
    assert math.isclose(choice.regret, math.log(2), abs_tol=1e-2)
    assert policy.observe(outcome("s", w, SLOW, 5.0))


def explorations(fast: list[float], slow: list[float]) -> int:
    """Of 200 decisions at epsilon 1, those on SLOW after these measured throughputs."""
    policy = no_replay(epsilon_start=1.0, epsilon_min=1.0)
    w = workload(work=100.0)
    v = view([SLOW, FAST], w)
    policy.values(w, v)
    for i, (n, rate) in enumerate([(FAST, r) for r in fast] + [(SLOW, r) for r in slow]):
        policy.observe(outcome(f"o{i}", w, n, rate))
    return sum(policy.choose(w, v, random.Random(i)).row == 0 for i in range(200))


def test_a_pair_measured_clearly_slower_is_no_longer_explored():
    # SLOW is 2x slower by its benchmark: log 0.69, inside the 0.7 margin of an untried pair
    assert explorations([], []) > 50
    assert explorations([17.0], [10.0]) > 50  # measured once each: not yet known
    steady = [17.0, 16.0, 18.0, 17.0]  # 1.35x faster, within 6%
    dropped = explorations(steady, [12.5, 13.0, 12.0])
    # only the RECHECK share of draws (0.2, half of them on SLOW) still tries it
    assert 0 < dropped < 35
    # as far apart, but each run anywhere within 2x: the gap is not known, still explored
    assert explorations([17.0, 9.0, 25.0, 12.0], [12.5, 7.0, 18.0]) > 50
    assert explorations(steady, [16.0, 16.5, 15.5]) > 50  # a near tie: always explored


def test_a_measured_near_tie_does_not_widen_the_value_margin():
    policy = no_replay(epsilon_start=1.0, epsilon_min=1.0)
    w = workload(work=100.0)
    v = view([SLOW, FAST], w)
    policy.values(w, v)
    for i, rate in enumerate([17.0, 16.0, 18.0, 17.0]):
        policy.observe(outcome(f"f{i}", w, FAST, rate))
    for i, rate in enumerate([16.0, 16.5, 15.5]):
        policy.observe(outcome(f"s{i}", w, SLOW, rate))
    for i in range(6):  # as fast when it works, but it fails: its value falls far below
        failed = outcome(f"x{i}", w, SLOW, 16.0)
        policy.observe(dataclasses.replace(failed, succeeded=False, work=None, work_source="none"))
    values = policy.values(w, v)
    assert values[1] - values[0] > policy.params.explore_margin
    assert all(policy.choose(w, v, random.Random(i)).row == 1 for i in range(200))


def test_epsilon_decays_to_its_floor():
    policy = qpolicy.QPolicy(qpolicy.Params(epsilon_start=0.5, epsilon_min=0.05, epsilon_decay=0.9))
    w = workload()
    v = view([SLOW, FAST], w)
    seen = []
    for _ in range(60):
        seen.append(policy.epsilon)
        policy.choose(w, v, random.Random(0))
    assert seen[0] == 0.5 and seen[-1] == 0.05
    assert all(a >= b for a, b in zip(seen, seen[1:], strict=False))


def test_model_classes_beyond_the_cap_share_other():
    policy = qpolicy.QPolicy()
    for i in range(features.MAX_MODEL_CLASSES):
        assert policy.model_class(f"m{i}") == f"m{i}"
    assert policy.model_class("one-too-many") == features.OTHER_CLASS
    assert policy.model_class("m3") == "m3"


def test_one_candidate_is_forced_and_none_is_an_error():
    policy = qpolicy.QPolicy()
    w = workload()
    assert policy.choose(w, view([FAST], w), random.Random(0)).mode == "forced"
    empty = view([FAST], w, free=[0])
    assert len(empty.rows) == 0
    with pytest.raises(ports.NoCandidatesError):
        policy.choose(w, empty, random.Random(0))


@pytest.mark.parametrize(
    "bad",
    [
        dict(mode="greedy"),
        dict(learning_rate=1.5),
        dict(epsilon_start=float("nan")),
        dict(epsilon_decay=0.0),
        dict(replay_capacity=0),
    ],
)
def test_bad_params_are_rejected_with_the_field_named(bad):
    with pytest.raises(model.ValidationError) as err:
        qpolicy.Params(**bad)
    assert next(iter(bad)).split("_")[0] in str(err.value)


def test_values_are_finite_for_a_large_fleet():
    nodes = [node(f"n{i}", f"d{i % 7}", fp16=10.0 + i % 7) for i in range(1000)]
    w = workload()
    v = view(nodes, w)
    assert np.isfinite(qpolicy.QPolicy().values(w, v)).all()


@pytest.mark.parametrize("drift_rate", [0.3, 0.0])
def test_a_device_that_slows_is_known_from_other_workloads(drift_rate):
    """Outcomes of other models on a slowed device lower its value for a model not seen there."""
    policy = no_replay(drift_rate=drift_rate, epsilon_start=0.0, epsilon_min=0.0)
    others = [workload(model_name=f"m{i}", work=100.0) for i in range(12)]
    b = workload(model_name="b", work=100.0)
    for w in (*others, b):
        policy.values(w, view([SLOW, FAST], w))
        for k in range(2):  # two measured runs: an average the drift may be measured against
            policy.observe(outcome(f"{w.model}-fast-{k}", w, FAST, 20.0))
    for i in range(2):
        policy.observe(outcome(f"b-slow-{i}", b, SLOW, 16.0))
    assert policy.choose(b, view([SLOW, FAST], b), random.Random(0)).row == 1
    for w in others:  # FAST now runs at half speed, seen only through the other models
        policy.observe(outcome(f"{w.model}-later", w, FAST, 10.0))
    choice = policy.choose(b, view([SLOW, FAST], b), random.Random(0))
    assert choice.row == (0 if drift_rate else 1)
    if drift_rate:
        assert math.log(0.5) < policy.drift["cuda/v100"] < math.log(0.6)
        assert policy.drift.get("cuda/p100", 0.0) == 0.0


def test_steady_throughputs_leave_no_drift():
    policy = no_replay()
    w = workload(work=100.0)
    policy.values(w, view([SLOW, FAST], w))
    for i in range(20):
        policy.observe(outcome(f"u{i}", w, FAST, 20.0 / 3))
    assert policy.drift.get("cuda/v100", 0.0) == 0.0


def test_new_benchmarks_of_a_device_class_change_its_prior():
    """A fleet whose nodes report new benchmarks is learned again (the values are memoized)."""
    policy = no_replay()
    w = workload(work=100.0)
    before = policy.values(w, view([SLOW, FAST], w))
    faster = node("fast-0", "v100", fp16=400.0, gbps=4000.0)
    after = policy.values(w, view([SLOW, faster], w))
    assert math.isclose(before[1] - before[0], math.log(2), abs_tol=1e-3)
    assert math.isclose(after[1] - after[0], math.log(4), abs_tol=1e-3)


def test_a_device_without_benchmarks_has_the_prior_of_an_unseen_one():
    """Benchmarks of 0 mean "not measured" (a probe without --benchmarks), never a speed of 0:
    one run there must not make every measured device look a million times faster, and a run
    at the speed the prior assumes is the best known, not the reward's floor."""
    policy = no_replay()
    w = workload(work=100.0)
    unmeasured = model.Node("real-0", "sim", ("cuda",), 4, 16384, model.Benchmarks())
    fp16, fp32, gbps = calibration.UNMEASURED
    assumed = node("slow-0", "slowgpu", fp16=fp16, fp32=fp32, gbps=gbps)
    values = policy.values(w, view([unmeasured, assumed], w))
    assert math.isclose(values[0], values[1], abs_tol=1e-9)
    policy.observe(outcome("a", w, unmeasured, 5.0))
    assert policy.recent_rewards[-1] == pytest.approx(0.0, abs=1e-9)
    wkey, mkey = policy.keys(w)
    assert policy.reference(wkey, mkey) == pytest.approx(5.0)
