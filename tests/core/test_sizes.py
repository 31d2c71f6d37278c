"""Sizes and the learner (issue 17): what is read as a speed, and what a burst cannot move."""

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from megagpu.core import model, qpolicy, qstate, sizes, work
from tests.helpers import node, view

DEVICES = ("v100", "p100", "k80")
FAST, SLOW = node("fast-0", "v100", fp16=100.0), node("slow-0", "p100", fp16=100.0)


def job(uid, size, model_name="m", memory=0):
    return model.Workload(
        uid=uid, workload_type="training", model=model_name, gpus=1, work=size, memory_mib=memory
    )


def ran(w, device, duration, source, told=None):
    work_size = None if source == "none" else (told if told is not None else w.work)
    return model.Outcome(
        uid=w.uid,
        workload=w,
        node=device,
        backend="cuda",
        device_class=device,
        duration_s=duration,
        work=work_size,
        work_source=source,
    )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_sizes_over_six_orders_leave_equal_devices_drift_near_one(seed):
    """1,000 outcomes, sizes 1 to 1e6, equal true speeds: drift stays within x0.8..x1.25.

    Sizes are reported, declared with noise x0.5..x2, or unknown; drift is checked after every
    outcome, not only at the end.
    """
    rng = random.Random(seed)
    policy = qpolicy.QPolicy(rng=random.Random(seed))
    low, high = math.log(0.8), math.log(1.25)
    for i in range(1000):
        w = job(f"u{i}", 10 ** rng.uniform(0, 6), f"m{rng.randrange(4)}", rng.choice((0, 30000)))
        source = rng.choice(model.WORK_SOURCES)
        told = w.work * 2 ** rng.uniform(-1, 1) if source == "declared" else None
        policy.observe(ran(w, rng.choice(DEVICES), w.work / 10.0, source, told))
        assert all(low <= d <= high for d in policy.drift.values()), policy.drift
    assert policy.updates == 1000


def learned_two_devices(replay_batch=16):
    """A policy that has seen the v100 run 4x faster than the p100 (sizes reported)."""
    params = qpolicy.Params(epsilon_start=0, epsilon_min=0, replay_batch=replay_batch)
    policy = qpolicy.QPolicy(params)
    rng = random.Random(1)
    for i in range(60):
        w = job(f"k{i}", 10 ** rng.uniform(0, 6))
        device = DEVICES[i % 2]
        policy.observe(ran(w, device, w.work / (40.0 if device == "v100" else 10.0), "reported"))
    return policy


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), slow_share=st.floats(0, 1))
def test_unsized_heavy_tailed_outcomes_are_never_read_as_speed(seed, slow_share):
    """1,000 unsized jobs (run times over 9 orders, the slow device's shortest) move no speed."""
    policy = learned_two_devices()
    drift = dict(policy.drift)
    wkey, mkey = policy.keys(job("x", 1.0))
    speeds = {a: c.throughput for a, c in policy.workloads[wkey].items()}
    rng = random.Random(seed)
    for i in range(1000):
        device = "p100" if rng.random() < slow_share else "v100"
        duration = 10 ** rng.uniform(-3, 6) * (0.001 if device == "p100" else 1.0)
        policy.observe(ran(job(f"n{i}", 1.0), device, duration, "none"))
    assert policy.drift == drift
    assert {a: c.throughput for a, c in policy.workloads[wkey].items()} == speeds
    values = policy.values(job("y", 1.0), view([FAST, SLOW], job("y", 1.0)))
    assert values[0] > values[1] + 1.0  # the v100 stays preferred by about log 4
    # each reward is what the pair's known speed implies: 1 or 1/4 of the best
    assert all(min(abs(r), abs(r - math.log(0.25))) < 0.05 for r in policy.recent_rewards)
    qstate.loads(qstate.dumps(policy))  # the state stays a valid document


def test_unsized_successes_bring_a_failed_pair_back_to_its_known_speed():
    policy = learned_two_devices(replay_batch=0)
    wkey, _ = policy.keys(job("x", 1.0))
    w = job("f", 1.0)
    policy.observe(model.Outcome(**{**ran(w, "v100", 5.0, "none").__dict__, "succeeded": False}))
    failed = policy.workloads[wkey]["cuda/v100"].q
    for i in range(20):
        policy.observe(ran(job(f"ok{i}", 1.0), "v100", 10.0 ** (i % 7), "none"))
    assert failed < -0.5 and policy.workloads[wkey]["cuda/v100"].q > -0.05


def test_one_mis_sized_outcome_moves_values_a_bounded_step():
    policy = learned_two_devices()
    wkey, _ = policy.keys(job("x", 1.0))
    before = policy.workloads[wkey]["cuda/p100"].throughput
    w = job("outlier", 1e6)
    policy.observe(ran(w, "p100", 1.0, "reported"))  # reads as 1e6 units/s, 1e5x the truth
    after = policy.workloads[wkey]["cuda/p100"].throughput
    assert abs(policy.drift.get("cuda/p100", 0.0)) <= policy.params.drift_rate * qpolicy.STEP
    assert 1 < after / before <= math.exp(2 * policy.params.throughput_ema * qpolicy.STEP)
    assert policy.recent_rewards[-1] <= policy.params.rewards.ceiling


def test_a_burst_of_stragglers_moves_values_far_less_than_it_claims():
    policy = learned_two_devices()
    w = job("y", 1.0)
    before = policy.values(w, view([FAST, SLOW], w))
    for i in range(10):  # ten v100 runs in a row 100x slower than the truth
        s = job(f"s{i}", 1000.0)
        policy.observe(ran(s, "v100", s.work / 0.4, "reported"))
        if i < 2:  # fewer than a majority of the last five: the drift does not move
            assert policy.drift.get("cuda/v100", 0.0) == 0.0
            assert policy.values(w, view([FAST, SLOW], w))[0] > before[1]
    after = policy.values(w, view([FAST, SLOW], w))
    assert before[0] - after[0] < math.log(100) / 2


def test_every_device_slowing_at_once_moves_drift_no_further_than_the_evidence():
    policy = learned_two_devices()
    for i in range(200):
        w = job(f"h{i}", 100.0)
        device = DEVICES[i % 2]
        policy.observe(
            ran(w, device, 2 * w.work / (40.0 if device == "v100" else 10.0), "reported")
        )
        assert all(math.log(0.5) - 1e-9 <= d <= 1e-9 for d in policy.drift.values())
    values = policy.values(job("y", 1.0), view([FAST, SLOW], job("y", 1.0)))
    assert values[0] - values[1] == pytest.approx(math.log(4), abs=0.3)


@pytest.mark.parametrize(
    ("declared", "report", "expected"),
    [
        (None, None, (None, "none")),
        (model.Work(100, "tokens"), None, (100, "declared")),
        (model.Work(100, "tokens"), work.Report(150, "tokens"), (150, "reported")),
        (None, work.Report(7), (7, "reported")),
        (model.Work(100, "tokens"), work.Report(150, "steps"), (None, "none")),
        (model.Work(100), work.Report(1001), (None, "none")),
        (model.Work(100), work.Report(None, problem="garbled"), (None, "none")),
    ],
)
def test_the_report_wins_unless_it_cannot_be_used(declared, report, expected):
    size = work.resolve(declared, report)
    assert (size.work.amount if size.work else None, size.source) == expected
    assert (size.problem is not None) == (report is not None and expected[1] == "none")


@pytest.mark.parametrize("amount", [0, -1, math.nan, math.inf])
def test_a_declared_amount_must_be_positive_and_finite(amount):
    with pytest.raises(model.ValidationError, match="work.amount"):
        model.Work(amount, "tokens")


def test_small_means_within_a_margin_of_the_typical_size_the_class_reported():
    history = sizes.History()
    assert not history.small("m", 1.0, 1.0)  # nothing reported: nothing is known small
    for i, size in enumerate((10.0, 100.0, 1000.0)):
        history.observe("m", ran(job(f"j{i}", size), "v100", 1.0, "reported"))
    assert history.small("m", 100.0 * math.e * 0.99, 1.0)  # typical: the geometric mean, 100
    assert not history.small("m", 100.0 * math.e * 1.01, 1.0)
