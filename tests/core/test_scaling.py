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
