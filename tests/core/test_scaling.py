import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from megagpu.core import fleet, model, predict, qpolicy, qstate, scaling
from tests.helpers import node, workload

FAST = node("fast-0", "fast", devices=8, fp16=400.0, gbps=3000.0)
SLOW = node("slow-0", "slow", devices=8, fp16=100.0, gbps=1000.0)
F = fleet.Fleet.build([FAST, SLOW])
MEASURED = 16.0
"""How much faster two models ran at eight GPUs on the fast device than on the slow one."""


def expected(datasheet: float) -> float:
    """The fast device's lead at eight GPUs: each model's terms are +-log(MEASURED / datasheet)
    / 2, and two of them over (2 + SHRINK) move each device by a third of the gap."""
    return datasheet * (MEASURED / datasheet) ** (2 / (2 + scaling.SHRINK))


def outcome(w: model.Workload, n: model.Node, throughput: float) -> model.Outcome:
    return model.Outcome(
        uid=f"{w.uid}-{n.device_class}",
        workload=w,
        node=n.name,
        backend="cuda",
        device_class=n.device_class,
        duration_s=100.0 / throughput,
        work=100.0,
        work_source="reported",
    )


def lead(policy: qpolicy.QPolicy, w: model.Workload, f: fleet.Fleet = F) -> float:
    """Predicted run time on the slow device over the fast one."""
    fast, slow = predict.run_times(policy, w, f, [0, 1])
    assert fast is not None and slow is not None
    return slow.seconds / fast.seconds


def trained() -> qpolicy.QPolicy:
    """Two models ran ``MEASURED`` times slower at eight GPUs on the slow device, and a third
    has run once, on the slow device, at one GPU and at eight."""
    policy = qpolicy.QPolicy(qpolicy.Params(replay_batch=0))
    policy.know(F)
    for name in ("a", "b"):
        policy.observe(outcome(workload(name, model_name=name, gpus=8), FAST, 40.0))
        policy.observe(outcome(workload(name, model_name=name, gpus=8), SLOW, 40.0 / MEASURED))
    for gpus in (1, 8):
        policy.observe(outcome(workload(f"c{gpus}", model_name="c", gpus=gpus), SLOW, 1.0))
    return policy


def c(gpus: int) -> model.Workload:
    return workload(f"new{gpus}", model_name="c", gpus=gpus, declared=model.Work(100.0))


def test_how_devices_scale_at_a_gpu_count_is_learned_across_models():
    policy = trained()
    datasheet = lead(policy, c(1))  # nothing ran on two devices at one GPU
    assert 1 < datasheet < MEASURED / 2
    assert lead(policy, c(8)) == pytest.approx(expected(datasheet))


def test_device_scaling_is_rebuilt_from_the_q_state_document():
    policy = trained()
    again = qstate.loads(qstate.dumps(policy))
    assert lead(again, c(8)) == pytest.approx(lead(policy, c(8)), rel=1e-6)


def test_new_benchmarks_are_scaled_afresh():
    """A datasheet that doubles the fast device's speed leaves less of the gap to explain."""
    policy = trained()
    faster = fleet.Fleet.build([node("fast-0", "fast", devices=8, fp16=800.0, gbps=6000.0), SLOW])
    before, datasheet = lead(policy, c(1)), lead(policy, c(1), faster)
    assert datasheet > before
    assert lead(policy, c(8), faster) == pytest.approx(expected(datasheet))


def test_a_key_measured_again_replaces_its_terms_and_one_device_says_nothing():
    s = scaling.DeviceScaling()
    s.update("training/org/model/g8/m24", {"a": 0.0, "b": -2.0})
    other = "training/x/g8/m80"
    assert math.log(s.factor(other, "a")) == pytest.approx(1.0 / (1 + scaling.SHRINK))
    assert math.log(s.factor(other, "b")) == pytest.approx(-1.0 / (1 + scaling.SHRINK))
    assert s.factor("training/x/g1/m80", "a") == 1.0
    assert s.factor("inference/x/g8/m80", "a") == 1.0
    s.update("training/org/model/g8/m24", {"a": -1.0, "b": -1.0})
    assert s.factor(other, "a") == pytest.approx(1.0)
    s.update("training/solo/g8/m24", {"a": 5.0})
    assert s.factor(other, "a") == pytest.approx(1.0)
    assert s.factor(other, "never-seen") == 1.0


KEYS = st.sampled_from(["training/a/g8/m8", "training/b/g8/m8", "training/org/c/g8/m24"])
LOGS = st.dictionaries(st.sampled_from(["x", "y", "z"]), st.floats(-5, 5), max_size=3)


@given(st.lists(st.tuples(KEYS, LOGS), max_size=40))
def test_incremental_updates_end_where_a_fresh_build_from_the_last_terms_does(updates):
    kept, last = scaling.DeviceScaling(), {}
    for wkey, logs in updates:
        kept.update(wkey, logs)
        last[wkey] = logs
    fresh = scaling.DeviceScaling()
    for wkey, logs in last.items():
        fresh.update(wkey, logs)
    for akey in ("x", "y", "z"):
        assert kept.factor("training/d/g8/m80", akey) == pytest.approx(
            fresh.factor("training/d/g8/m80", akey), rel=1e-9, abs=1e-9
        )


# --- how each device scales between GPU counts ---------------------------------------------
ACROSS = 2.0
"""How much faster two models ran with eight GPUs than with one on the slow device."""


def counted() -> qpolicy.QPolicy:
    """Two models ran ``ACROSS`` times faster at eight GPUs than at one on the slow device, and
    model ``c`` has run at one GPU on it."""
    policy = qpolicy.QPolicy(qpolicy.Params(replay_batch=0))
    policy.know(F)
    for name in ("a", "b"):
        for gpus, throughput in ((1, 10.0), (8, 10.0 * ACROSS)):
            w = workload(f"{name}{gpus}", model_name=name, gpus=gpus)
            policy.observe(outcome(w, SLOW, throughput))
    policy.observe(outcome(workload("c1", model_name="c", gpus=1), SLOW, 5.0))
    return policy


def on_slow(policy: qpolicy.QPolicy, w: model.Workload, row: int = 1) -> tuple[float, float]:
    """(Predicted throughput of ``w`` on the slow device, or ``row``'s, its log spread)."""
    found = predict.action_run_times(policy, w, F)
    aid = int(F.row_action_id[row])
    assert not math.isnan(found.seconds[aid])
    return 100.0 / float(found.seconds[aid]), float(found.speed_sigma[aid])


def across(models: int) -> scaling.LogEstimate:
    """The slow device's 1 -> 8 GPU log ratio after ``models`` models ran ``ACROSS`` x faster."""
    shrink = scaling.COUNT_SHRINK
    mean = (models * math.log(ACROSS) + shrink * math.log(8)) / (models + shrink)
    spread = (models * (math.log(ACROSS) - mean) ** 2 + shrink * scaling.COUNT_SIGMA**2) / (
        models + shrink
    )
    return scaling.LogEstimate(mean, spread * (1 + 1 / (models + shrink)))


def test_a_first_run_at_a_new_gpu_count_follows_how_the_device_scaled_for_other_models():
    policy = counted()
    ratio = across(2)
    assert on_slow(policy, c(8)) == pytest.approx(
        (5.0 * math.exp(ratio.value), math.sqrt(ratio.variance))
    )
    for gpus, throughput in ((1, 10.0), (8, 10.0 * ACROSS)):  # a third model, learned as it ends
        policy.observe(outcome(workload(f"d{gpus}", model_name="d", gpus=gpus), SLOW, throughput))
    assert on_slow(policy, c(8))[0] == pytest.approx(5.0 * math.exp(across(3).value))
    # no other model measured: linear, with the linear prior's spread
    linear = qpolicy.QPolicy(qpolicy.Params(replay_batch=0))
    linear.observe(outcome(workload("c1", model_name="c", gpus=1), SLOW, 5.0))
    assert on_slow(linear, c(8)) == pytest.approx((5.0 * 8, predict.OTHER_COUNTS_SIGMA))


def test_a_first_run_at_a_new_count_is_never_surer_than_another_memory_bucket_run():
    policy = counted()
    for name in range(20):  # twenty more models agree exactly
        for gpus, throughput in ((1, 10.0), (8, 10.0 * ACROSS)):
            w = workload(f"m{name}-{gpus}", model_name=f"m{name}", gpus=gpus)
            policy.observe(outcome(w, SLOW, throughput))
    assert math.sqrt(across(22).variance) < predict.MODEL_SIGMA
    assert on_slow(policy, c(8))[1] == pytest.approx(predict.MODEL_SIGMA)


def test_devices_the_model_never_ran_on_are_calibrated_by_the_same_scaling():
    """The fast device leads the slow one at eight GPUs as at one: no device gains from being
    scaled linearly while the other is scaled as measured."""
    policy = counted()
    one = on_slow(policy, c(1), row=0)[0] / on_slow(policy, c(1))[0]
    assert on_slow(policy, c(8), row=0)[0] / on_slow(policy, c(8))[0] == pytest.approx(one)


def test_the_same_device_at_other_counts_and_other_devices_at_this_count_are_weighed():
    policy = counted()
    policy.observe(outcome(workload("c8", model_name="c", gpus=8), FAST, 200.0))
    wkey, mkey = policy.keys(c(8))
    scale = policy.scale(wkey, mkey)
    prior = math.log(scale.best) + policy.prior_value(wkey, mkey, "cuda/slow", scale)
    counts = math.log(5.0) + across(2).value
    spread = max(math.sqrt(across(2).variance), predict.MODEL_SIGMA)
    weight = 1 / predict.PRIOR_SIGMA**2 + 1 / spread**2
    expected = (prior / predict.PRIOR_SIGMA**2 + counts / spread**2) / weight
    assert on_slow(policy, c(8)) == pytest.approx((math.exp(expected), weight**-0.5))


def test_the_count_scaled_prediction_follows_the_device_s_drift():
    policy = counted()
    before = on_slow(policy, c(8))[0]
    policy.drift["cuda/slow"] = math.log(0.5)
    assert on_slow(policy, c(8))[0] == pytest.approx(before / 2)


def test_the_count_whose_scaling_is_known_best_predicts():
    s = scaling.CountScaling()
    for name in ("a", "b", "d"):  # three models ran at 4 and 8 GPUs; none at 1 and 8
        s.update(f"training/{name}/g4", "x", 10.0)
        s.update(f"training/{name}/g8", "x", 12.0)
    s.update("training/c/g1", "x", 3.0)
    s.update("training/c/g4", "x", 9.0)
    found = s.estimate("training/c/g8", "x")
    shrink = scaling.COUNT_SHRINK
    ratio = (3 * math.log(1.2) + shrink * math.log(2)) / (3 + shrink)
    assert found is not None and found.value == pytest.approx(math.log(9.0) + ratio)
    assert set(s.estimates("training/c/g8")) == {"x"}


def test_count_scaling_is_rebuilt_from_the_q_state_document_as_it_loads():
    policy = counted()
    again = qstate.loads(qstate.dumps(policy))
    assert again._counts is not None  # built off a scheduler's request path
    assert on_slow(again, c(8)) == pytest.approx(on_slow(policy, c(8)), rel=1e-9)


def test_runs_without_gpus_and_the_model_s_own_count_say_nothing():
    s = scaling.CountScaling()
    s.update("training/m/g0", "cpu/x", 5.0)
    assert s.estimate("training/m/g8", "cpu/x") is None
    assert s.estimate("training/m/g0", "cpu/x") is None
    s.update("training/m/g8", "cuda/x", 5.0)
    assert s.estimate("training/m/g8", "cuda/x") is None
    assert s.estimate("training/m/g4", "cuda/y") is None
    assert s.estimate("inference/m/g4", "cuda/x") is None
    assert s.estimates("training/m/g4") == {
        "cuda/x": pytest.approx(  # nothing learned: linear
            (math.log(5.0 / 2), scaling.COUNT_SIGMA**2 * (1 + 1 / scaling.COUNT_SHRINK))
        )
    }
    s.update("training/m/g8", "cuda/x", 0.0)
    assert s.estimates("training/m/g4") == {}


MKEYS = st.sampled_from(["training/a/g1", "training/a/g8", "training/b/g1", "training/b/g4"])


@given(st.lists(st.tuples(MKEYS, st.sampled_from(["x", "y"]), st.floats(0, 100)), max_size=40))
def test_incremental_count_updates_end_where_a_fresh_build_does(updates):
    kept, last = scaling.CountScaling(), {}
    for mkey, akey, throughput in updates:
        kept.update(mkey, akey, throughput)
        last[(mkey, akey)] = throughput
    fresh = scaling.CountScaling()
    for (mkey, akey), throughput in last.items():
        fresh.update(mkey, akey, throughput)
    for mkey in ("training/a/g4", "training/b/g8", "training/c/g2"):
        got, want = kept.estimates(mkey), fresh.estimates(mkey)
        assert set(got) == set(want)
        for akey, found in got.items():
            assert found == pytest.approx(want[akey], rel=1e-6, abs=1e-9)
