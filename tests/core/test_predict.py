import dataclasses
import math
import random

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from megagpu.core import fleet, learned, model, predict, qpolicy, qstate, sizes, waiting
from tests.helpers import node, workload

FAST = node("fast-0", "fast", devices=2, fp16=400.0, gbps=3000.0)
SLOW = node("slow-0", "slow", devices=2, fp16=100.0, gbps=1000.0)
F = fleet.Fleet.build([FAST, SLOW])


def outcome(w: model.Workload, device: str, seconds: float, work: float | None) -> model.Outcome:
    return model.Outcome(
        uid=f"{w.uid}-{device}-{seconds}",
        workload=w,
        node=f"{device}-0",
        backend="cuda",
        device_class=device,
        duration_s=seconds,
        work=work,
        work_source="none" if work is None else "reported",
    )


def test_no_size_and_no_history_gives_no_prediction():
    policy = qpolicy.QPolicy()
    policy.observe(outcome(workload("a", work=100.0), "fast", 10.0, 100.0))
    unsized = workload("b", work=100.0)
    assert predict.run_times(policy, unsized, F, [0, 1]) == [None, None]


def test_a_declared_size_without_any_observed_throughput_gives_no_prediction():
    sized = workload("a", declared=model.Work(100.0))
    assert predict.run_times(qpolicy.QPolicy(), sized, F, [0, 1]) == [None, None]


def test_declared_size_over_learned_throughput():
    policy = qpolicy.QPolicy()
    policy.observe(outcome(workload("a", work=100.0), "fast", 10.0, 100.0))
    fast, slow = predict.run_times(policy, workload("b", declared=model.Work(50.0)), F, [0, 1])
    assert fast is not None and fast.seconds == pytest.approx(5.0)
    assert fast.size_source == "declared"
    # the slow device is known only through the calibrated prior: slower and less certain
    assert slow is not None and slow.seconds > fast.seconds and slow.sigma > fast.sigma


def test_a_first_multi_gpu_run_is_predicted_from_the_model_at_other_gpu_counts():
    policy = qpolicy.QPolicy()
    two = workload("b", gpus=2, declared=model.Work(100.0))
    assert predict.run_times(policy, two, F, [0, 1]) == [None, None]
    policy.observe(outcome(workload("a", work=100.0), "fast", 10.0, 100.0))  # one GPU: 10/s
    fast, slow = predict.run_times(policy, two, F, [0, 1])
    assert fast is not None and fast.seconds == pytest.approx(5.0)  # two GPUs: 20/s, linearly
    spread = math.hypot(sizes.DECLARED_SIGMA, predict.OTHER_COUNTS_SIGMA)
    assert fast.sigma == pytest.approx(spread)
    assert slow is not None and slow.seconds > fast.seconds
    another = workload("d", model_name="other", gpus=2, declared=model.Work(100.0))
    assert predict.run_times(policy, another, F, [0]) == [None]


def test_runs_without_gpus_never_predict_runs_with_them_nor_the_other_way():
    policy = qpolicy.QPolicy()
    policy.know(fleet.Fleet.build([FAST, node("cpu-0", "epyc", backends=("cpu",))]))
    cpu_only = workload("a", gpus=0, backends=("cuda", "cpu"), work=100.0)
    ran = model.Outcome("o", cpu_only, "cpu-0", "cpu", "epyc", 1000.0)
    policy.observe(dataclasses.replace(ran, work=100.0, work_source="reported"))
    one_gpu = workload("b", gpus=1, declared=model.Work(100.0))
    assert predict.run_times(policy, one_gpu, F, [0, 1]) == [None, None]


def test_history_gives_an_uncertain_estimate_once_a_class_has_reported_sizes():
    policy = qpolicy.QPolicy()
    for i, work in enumerate((10.0, 100.0, 1000.0)):
        policy.observe(outcome(workload(f"a{i}", work=work), "fast", work / 10.0, work))
    (found,) = predict.run_times(policy, workload("b"), F, [0])
    assert found is not None and found.size_source == "history"
    assert found.seconds == pytest.approx(10.0)  # the geometric mean size, 100, at 10/s
    assert found.sigma > 1.0


def test_reports_teach_how_far_declarations_are_off():
    history = sizes.History()
    w = workload("a", declared=model.Work(100.0))
    for i in range(20):
        history.observe("k", outcome(dataclass_uid(w, i), "fast", 10.0, 200.0))
    size = history.size("k", w)
    assert size is not None and size.amount == pytest.approx(200.0, rel=0.1)
    assert size.sigma < sizes.DECLARED_SIGMA / 2


def dataclass_uid(w: model.Workload, i: int) -> model.Workload:
    return dataclasses.replace(w, uid=f"{w.uid}{i}")


def test_size_history_survives_the_q_state_document():
    policy = qpolicy.QPolicy()
    for i, work in enumerate((10.0, 100.0, 1000.0)):
        policy.observe(outcome(workload(f"a{i}", work=work), "fast", work / 10.0, work))
    again = qstate.loads(qstate.dumps(policy))
    w = workload("b")
    (before,), (after,) = predict.run_times(policy, w, F, [0]), predict.run_times(again, w, F, [0])
    assert before is not None and after is not None
    assert after.seconds == pytest.approx(before.seconds, rel=1e-5)
    assert after.sigma == pytest.approx(before.sigma, rel=1e-5)


def test_percentage_error_and_its_median():
    assert predict.percentage_error(110.0, 100.0) == pytest.approx(10.0)
    assert predict.percentage_error(50.0, 100.0) == pytest.approx(50.0)
    pairs = [(110.0, 100.0), (None, 5.0), (90.0, 100.0), (300.0, 100.0)]
    assert predict.mdape(pairs) == pytest.approx(10.0)
    assert predict.mdape([(None, 1.0)]) is None
    with pytest.raises(ValueError):
        predict.percentage_error(1.0, 0.0)


def busy_view(
    w: model.Workload, wait_left_s: float, fast_ends_s: float, waited_s: float = 0.0
) -> fleet.View:
    """fast-0 full (one job predicted to end at ``fast_ends_s``), slow-0 free."""
    running = {0: [fleet.Running(w, 0, 0.0, 2, model.Prediction(fast_ends_s, 0.0, "true"))]}
    free = np.asarray([0, 2])
    return fleet.View(
        F,
        np.asarray([1]),
        free,
        busy_rows=np.asarray([0]),
        running=running,
        now_s=0.0,
        wait_left_s=wait_left_s,
        waited_s=waited_s,
    )


def trained() -> qpolicy.QPolicy:
    policy = qpolicy.QPolicy()
    for i in range(5):
        policy.observe(outcome(workload(f"f{i}", work=100.0), "fast", 10.0, 100.0))
        policy.observe(outcome(workload(f"s{i}", work=100.0), "slow", 100.0, 100.0))
    return policy


def test_assess_waits_for_a_busy_faster_device_and_says_why():
    w = workload("b", declared=model.Work(100.0))
    found = learned.assess(trained(), w, busy_view(w, 3600.0, 20.0))
    assert found.wait and found.row == 0
    assert "waiting for fast-0" in found.reason
    assert found.start(0) == pytest.approx(20.0)
    run = found.prediction(1)
    assert run is not None and run.seconds == pytest.approx(100.0, rel=0.05)


def test_assess_does_not_wait_past_the_wait_left_or_without_a_size():
    policy = trained()
    sized = workload("b", declared=model.Work(100.0))
    assert not learned.assess(policy, sized, busy_view(sized, 10.0, 20.0)).wait
    assert not learned.assess(policy, sized, busy_view(sized, 0.0, 20.0)).wait
    unsized = workload("c", model_name="new")
    found = learned.assess(policy, unsized, busy_view(unsized, 3600.0, 1.0))
    assert not found.wait and found.row == -1


def test_a_busy_device_that_frees_too_late_is_not_worth_the_wait():
    w = workload("b", declared=model.Work(100.0))
    assert not learned.assess(trained(), w, busy_view(w, 3600.0, 95.0)).wait


def test_a_job_waits_in_all_no_longer_than_it_would_run_on_the_best_free_node():
    # 100 s predicted on the free slow node; fast frees in 20 s and would finish it at 30 s
    w = workload("b", declared=model.Work(100.0))
    assert learned.assess(trained(), w, busy_view(w, 3600.0, 20.0, waited_s=70.0)).wait
    assert not learned.assess(trained(), w, busy_view(w, 3600.0, 20.0, waited_s=85.0)).wait


def test_learned_policy_never_waits_when_it_must_place():
    policy = learned.LearnedPolicy(trained())
    w = workload("b", declared=model.Work(100.0))
    choice = policy.choose(w, busy_view(w, 0.0, 1.0), random.Random(0))
    assert not choice.wait and choice.row == 1
    assert choice.prediction is not None and math.isfinite(choice.prediction.seconds)


def test_node_free_at_counts_ends_claims_and_unknown_run_times():
    w = workload("x")

    def job(start: float, seconds: float | None, slots: int) -> fleet.Running:
        p = None if seconds is None else model.Prediction(seconds, 0.1, "declared")
        return fleet.Running(w, 0, start, slots, p)

    none = lambda _: None  # noqa: E731
    assert waiting.node_free_at(0.0, 2, 2, [], none) == (0.0, 0.0)
    ends = [job(0.0, 30.0, 1), job(0.0, 10.0, 1)]
    assert waiting.node_free_at(5.0, 0, 1, ends, none)[0] == 10.0
    assert waiting.node_free_at(5.0, 0, 2, ends, none)[0] == 30.0
    assert waiting.node_free_at(5.0, 0, 2, [job(0.0, None, 1), job(0.0, 10.0, 1)], none) is None
    # overdue: another tenth of its predicted run time
    assert waiting.node_free_at(50.0, 0, 1, [job(0.0, 10.0, 1)], none)[0] == pytest.approx(51.0)
    # a job ahead in the queue takes the first slot that frees (at 10 s) for 40 s
    ahead = [job(0.0, 40.0, 1)]
    assert waiting.node_free_at(5.0, 0, 1, ends, none, ahead)[0] == 30.0
    assert waiting.node_free_at(5.0, 0, 2, ends, none, ahead)[0] == 50.0
    # one that needs more than the node ever frees first does not block a smaller one
    assert waiting.node_free_at(5.0, 0, 1, ends, none, [job(0.0, 40.0, 4)])[0] == 10.0


def test_run_times_from_kept_speeds_are_those_computed_afresh():
    policy, asked = trained(), []

    def kept(wkey: str, mkey: str) -> predict.Speeds:
        asked.append((wkey, mkey))
        return predict.action_speeds(policy, wkey, mkey, F)

    for w in (workload("a", declared=model.Work(100.0)), workload("b"), workload("c", gpus=2)):
        fresh, reused = (
            predict.action_run_times(policy, w, F),
            predict.action_run_times(policy, w, F, kept),
        )
        for a, b in zip(fresh[:3], reused[:3], strict=True):
            np.testing.assert_array_equal(a, b)
        assert fresh.source == reused.source
    assert asked  # a workload with a size asked for its class's speeds


JOBS = st.lists(
    st.tuples(
        st.floats(0.0, 100.0),
        st.one_of(st.none(), st.floats(1.0, 100.0)),
        st.integers(1, 3),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(
    JOBS,
    JOBS,
    st.lists(
        st.tuples(st.floats(0.0, 60.0), st.integers(0, 2), st.integers(1, 4), st.booleans()),
        min_size=1,
        max_size=8,
    ),
)
def test_kept_free_times_are_those_computed_afresh(running, ahead, steps):
    w = workload("x")

    def jobs(specs: list) -> list[fleet.Running]:
        return [
            fleet.Running(w, 0, start, slots, None if s is None else model.Prediction(s, 0.1, "x"))
            for start, s, slots in specs
        ]

    none = lambda _: None  # noqa: E731
    kept, now = waiting.FreeTimes(), 100.0
    on, queued = jobs(running), jobs(ahead)
    for step, free, need, with_ahead in steps:  # the same jobs, other free slots, needs, queues
        now += step
        behind = queued if with_ahead else ()
        assert kept.get(3, now, free, need, on, none, behind) == waiting.node_free_at(
            now, free, need, on, none, behind
        )
    on = jobs(running[1:])  # the jobs there changed: a new sequence
    assert kept.get(3, now, 0, 1, on, none) == waiting.node_free_at(now, 0, 1, on, none)


def test_a_free_time_kept_without_a_queue_is_not_reused_with_one():
    w, none = workload("x"), lambda _: None
    on = [fleet.Running(w, 0, 0.0, 1, model.Prediction(30.0, 0.1, "x"))]
    queued = [fleet.Running(w, 0, 0.0, 1, model.Prediction(40.0, 0.1, "x"))]
    kept = waiting.FreeTimes()
    assert kept.get(0, 5.0, 0, 1, on, none)[0] == 30.0
    assert kept.get(0, 6.0, 0, 1, on, none, queued)[0] == 70.0  # the queued job goes first


@settings(max_examples=300, deadline=None)
@given(st.floats(1.6e9, 1.9e9), st.floats(1.0, 1e6), st.floats(0.0, 1e6))
@example(1765774562.3953156, 877794.4779002665, 0.0)  # start + run - overdue rounds up: late
@example(1765774562.3953156, 877794.4779002665, 1.0)
def test_a_kept_free_time_holds_to_the_last_float_before_the_job_is_overdue(start, run, early):
    w, none = workload("x"), lambda _: None
    on = [fleet.Running(w, 0, start, 1, model.Prediction(run, 0.1, "x"))]
    due, overdue = start + run, waiting.OVERDUE_SHARE * run
    end = start + run - overdue  # where the job becomes overdue, to a rounding step
    kept = waiting.FreeTimes()
    kept.get(0, end - early, 0, 1, on, none)
    for now in (end, math.nextafter(end, -math.inf), math.nextafter(end, math.inf)):
        assert kept.get(0, now, 0, 1, on, none) == waiting.node_free_at(now, 0, 1, on, none)
    if end + overdue > due:  # the example's case: at ``end`` the job is overdue already
        assert waiting.node_free_at(end, 0, 1, on, none)[0] == end + overdue


def test_no_wait_on_a_size_guessed_from_a_heavy_tailed_history():
    policy = trained()
    for i, work in enumerate((1.0, 100.0, 10000.0)):
        policy.observe(outcome(workload(f"h{i}", model_name="h", work=work), "fast", 1.0, work))
        policy.observe(outcome(workload(f"k{i}", model_name="h", work=work), "slow", 1e4, work))
    guessed = workload("g", model_name="h")
    found = learned.assess(policy, guessed, busy_view(guessed, 3600.0, 1.0))
    assert found.prediction(1) is not None and found.prediction(1).size_source == "history"
    assert not found.wait
    declared = workload("d", model_name="h", declared=model.Work(100.0))
    assert learned.assess(policy, declared, busy_view(declared, 3600.0, 1.0)).wait


MID = node("mid-0", "mid", devices=2, fp16=200.0, gbps=1500.0)
NEAR = fleet.Fleet.build([FAST, MID])
"""Two devices the datasheets put within the prior's spread of each other (mid about 2x slower)."""


def chosen_rows(
    policy: qpolicy.QPolicy, w: model.Workload, draws: int = 200, f: fleet.Fleet = NEAR
) -> list[int]:
    """How often each row of ``f`` (both free) is chosen over ``draws`` decisions."""
    both_free = fleet.View(f, np.asarray([0, 1]), np.asarray([2, 2]))
    placing = learned.LearnedPolicy(policy)
    rows = [placing.choose(w, both_free, random.Random(i)).row for i in range(draws)]
    return [rows.count(0), rows.count(1)]


def test_sampled_speeds_try_a_device_believed_slower_until_it_is_measured():
    policy = qpolicy.QPolicy()
    for i in range(5):  # the class ran on fast only: mid is known by the calibrated prior
        policy.observe(outcome(workload(f"f{i}", work=100.0), "fast", 10.0, 100.0))
    typical = workload("t", declared=model.Work(100.0))
    fast, mid = chosen_rows(policy, typical)
    assert 0 < mid < fast  # tried, less often than the device believed faster
    # ten times the class's typical size: a wrong try would cost too much, so no sampling
    assert chosen_rows(policy, workload("l", declared=model.Work(1000.0)))[1] == 0
    for i in range(5):  # measured 3x slower: no longer worth a try
        policy.observe(outcome(workload(f"m{i}", work=100.0), "mid", 30.0, 100.0))
    assert chosen_rows(policy, typical)[1] == 0


def test_a_device_believed_far_slower_is_never_sampled():
    policy = qpolicy.QPolicy()
    for i in range(5):  # slow: known by its datasheet only, over 2x slower than fast
        policy.observe(outcome(workload(f"f{i}", work=100.0), "fast", 10.0, 100.0))
    typical = workload("t", declared=model.Work(100.0))
    assert chosen_rows(policy, typical, draws=400, f=F)[1] == 0
    policy.params = dataclasses.replace(policy.params, explore_margin=5.0)
    assert chosen_rows(policy, typical, draws=400, f=F)[1] > 0  # the margin is what keeps it


def test_sampled_placement_counts_a_decision_never_samples_when_frozen_nor_overrides_shadow():
    policy = qpolicy.QPolicy()
    for i in range(5):
        policy.observe(outcome(workload(f"f{i}", work=100.0), "fast", 10.0, 100.0))
    typical = workload("t", declared=model.Work(100.0))
    before = policy.decisions
    chosen_rows(policy, typical, draws=10)
    assert policy.decisions == before + 10
    policy.params = dataclasses.replace(policy.params, mode="frozen")
    assert chosen_rows(policy, typical)[1] == 0
    policy.params = dataclasses.replace(policy.params, mode="shadow", baseline="random")
    fast, mid = chosen_rows(policy, typical, draws=40)
    assert fast > 0 and mid > 0


def test_a_candidate_without_a_prediction_leaves_the_choice_to_the_q_policy():
    predicted = predict.action_run_times(qpolicy.QPolicy(), workload("u"), NEAR)
    view = fleet.View(NEAR, np.asarray([0, 1]), np.asarray([2, 2]))
    assert learned.sampled_finish(predicted, view, random.Random(0), 0.7) is None


def test_queue_buckets_order_predicted_run_times_and_put_the_unknown_in_the_middle():
    assert predict.queue_bucket(30.0) == 0 and predict.queue_bucket(60.0) == 0
    assert predict.queue_bucket(61.0) == 1
    assert predict.queue_bucket(30 * 86400.0) == predict.QUEUE_BUCKETS - 1
    buckets = [predict.queue_bucket(10.0**e) for e in range(1, 8)]
    assert buckets == sorted(buckets)
    assert predict.queue_bucket(None) == predict.UNKNOWN_BUCKET == (predict.QUEUE_BUCKETS - 1) / 2


def test_best_run_time_is_the_fastest_known_pair_the_workload_can_use():
    policy = trained()  # 100 units: 10 s on fast, 100 s on slow (cuda)
    sized = workload("b", declared=model.Work(100.0))
    assert predict.best_run_time(policy, sized) == pytest.approx(10.0)
    # no declaration: the class's history of reported sizes (all 100) says the same
    assert predict.best_run_time(policy, workload("h")) == pytest.approx(10.0)
    assert predict.best_run_time(policy, workload("u", model_name="never-seen")) is None
    vulkan_only = dataclasses.replace(sized, uid="v", backends=("vulkan",))
    assert predict.best_run_time(policy, vulkan_only) is None


def test_a_job_without_gpus_is_timed_on_cpus_only_whatever_backends_it_lists():
    policy = trained()
    policy.know(fleet.Fleet.build([FAST, SLOW, node("cpu-0", "epyc", backends=("cpu",))]))
    cpu_job = workload("c", model_name="m", gpus=0, backends=("cuda", "cpu"))
    ran = model.Outcome("o", cpu_job, "cpu-0", "cpu", "epyc", 1000.0)
    policy.observe(dataclasses.replace(ran, work=100.0, work_source="reported"))
    sized = dataclasses.replace(cpu_job, uid="d", declared=model.Work(100.0))
    # the GPU pairs' priors, calibrated by the CPU run, would say far less than 1000 s
    assert predict.best_run_time(policy, sized) == pytest.approx(1000.0)
