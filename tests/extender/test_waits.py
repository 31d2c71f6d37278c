"""Predictions in decisions and waiting in filter (issue 18)."""

import asyncio
import dataclasses
import json
import random

import numpy as np
import pytest

from megagpu.core import model, predict, qpolicy, waiting
from megagpu.extender import ledger, placement, server, waits
from megagpu.kube import convert, selects
from tests.extender.helpers import Recorder, args, binding, pod
from tests.helpers import node

FAST = node("fast-0", "fast", devices=1, fp16=400.0, gbps=3000.0)
SLOW = node("slow-0", "slow", devices=1, fp16=100.0, gbps=1000.0)
NAMES = ["fast-0", "slow-0"]
NOW = 1_800_000_000.0


def trained(slow_s: float = 100.0, epsilon: float = 0.0) -> qpolicy.QPolicy:
    """A policy that has seen the pods' class run 100 units in 10 s on fast, ``slow_s`` on slow."""
    policy = qpolicy.QPolicy(qpolicy.Params(epsilon_start=epsilon, epsilon_min=epsilon))
    w = convert.workload_from_pod(pod("seed", **{"megagpu.io/work-amount": "100"}))
    for i in range(4):
        for device, seconds in (("fast", 10.0), ("slow", slow_s)):
            policy.observe(ran(f"o{i}{device}", w, device, seconds))
    return policy


def ran(uid: str, w: model.Workload, device: str, seconds: float) -> model.Outcome:
    """``w`` ran 100 work units in ``seconds`` on ``device``-0."""
    return model.Outcome(
        uid=uid,
        workload=w,
        node=f"{device}-0",
        backend="cuda",
        device_class=device,
        duration_s=seconds,
        work=100.0,
        work_source="reported",
    )


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def make(
    max_wait_s: float = 60.0, policy: qpolicy.QPolicy | None = None
) -> tuple[placement.Placement, Recorder, Clock]:
    clock, recorder = Clock(), Recorder()
    settings = waiting.Settings(max_wait_s=max_wait_s)
    w = waits.Waits(settings=settings, clock=clock)
    p = placement.Placement(
        ledger.Ledger([FAST, SLOW]),
        server.FixedPolicy(policy or trained()),
        recorder,
        random.Random(0),
        waits=w,
    )
    return p, recorder, clock


def busy_fast(p: placement.Placement, predicted: float = 10.0) -> None:
    """Another pod has run 5 s of a predicted ``predicted`` s on the fast node."""
    p.ledger.hold("busy", "fast-0", (0,))
    w = convert.workload_from_pod(pod("busy", **{"megagpu.io/work-amount": "100"}))
    prediction = model.Prediction(predicted, 0.05, "declared")
    p.waits.jobs.add("busy", waits.Job("fast-0", "cuda", w, NOW - 5.0, prediction))


def sized(uid: str, **extra: str) -> dict:
    return pod(uid, **{"megagpu.io/work-amount": "100", **extra})


def test_filter_keeps_the_pod_pending_for_a_busy_faster_node():
    p, _, _ = make()
    busy_fast(p)
    result = p.filter(args(sized("a"), NAMES))
    assert result["NodeNames"] == []
    reasons = set(result["FailedNodes"].values())
    assert len(reasons) == 1
    (reason,) = reasons
    assert reason.startswith("waiting for fast-0: predicted finish") and "on slow-0" in reason


def test_no_wait_when_the_fast_node_frees_too_late():
    p, _, _ = make()
    busy_fast(p, predicted=500.0)
    assert p.filter(args(sized("a"), NAMES))["NodeNames"] == ["slow-0"]


def test_an_unsized_workload_never_waits_and_gets_no_prediction():
    p, rec, _ = make()
    busy_fast(p)
    unknown = pod("a", **{"megagpu.io/model": "never-seen"})  # no size, no history
    assert p.filter(args(unknown, NAMES))["NodeNames"] == ["slow-0"]
    asyncio.run(p.bind(binding("a", "slow-0")))
    decision = json.loads(rec.calls[-1][1]["megagpu.io/decision"])
    assert decision["predictedSeconds"] is None and decision["predictedSigma"] is None


def test_the_wait_bound_holds_from_the_first_wait():
    p, _, clock = make(max_wait_s=60.0)
    busy_fast(p)
    # overdue: it keeps "finishing soon", a wrong prediction the bound must cut short
    p.waits.jobs.add("busy", p.waits.jobs.on("fast-0")[0]._replace(started_s=NOW - 50.0))
    assert p.filter(args(sized("a"), NAMES))["NodeNames"] == []
    clock.now += 59.0
    assert p.filter(args(sized("a"), NAMES))["NodeNames"] == []
    clock.now += 2.0
    assert p.filter(args(sized("a"), NAMES))["NodeNames"] == ["slow-0"]


def test_the_wait_reason_follows_the_clock_and_what_the_policy_learns():
    policy = trained()
    p, _, clock = make(max_wait_s=3600.0, policy=policy)
    busy_fast(p)
    unpredicted = p.waits.jobs.on("fast-0")[0]._replace(prediction=None)  # the policy's guess
    p.waits.jobs.add("busy", unpredicted)

    def fresh() -> str:
        """The reason of an extender that has kept nothing, in the same state."""
        q, _, q_clock = make(max_wait_s=3600.0, policy=policy)
        q.ledger.hold("busy", "fast-0", (0,))
        q.waits.jobs.add("busy", unpredicted)
        q_clock.now = clock.now
        return q.filter(args(sized("a"), NAMES))["FailedNodes"]["slow-0"]

    # fast turns out slower: the busy job is predicted to end later
    slower = ran("slower", unpredicted.workload, "fast", 40.0)
    seen = []
    for step in ("now", "learn", 3.0, 30.0):  # overdue in the end: past 9/10 of its run time
        if step == "learn":
            policy.observe(slower)
        else:
            clock.now += 0.0 if step == "now" else float(step)
        seen.append(p.filter(args(sized("a"), NAMES))["FailedNodes"]["slow-0"])
        assert seen[-1] == fresh()
    assert len(set(seen)) == len(seen), seen


def test_kept_speeds_are_those_of_each_workloads_own_class():
    policy, f = trained(), ledger.Ledger([FAST, SLOW]).fleet
    kept = waits.Waits()
    # the learned class, another memory size of its model (the model's speed, wider), another
    # GPU count (scaled), and the first again
    for p in (sized("a"), sized("b", **{"megagpu.io/memory-mib": "65536"}), sized("c", gpus=2)):
        w = convert.workload_from_pod(p)
        fresh = predict.action_run_times(policy, w, f)
        for a, b in zip(kept.predictions(policy, w, f)[:3], fresh[:3], strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_pod_waits_in_all_no_longer_than_it_would_run_on_the_best_free_node():
    p, _, clock = make(max_wait_s=3600.0)  # the maximum wait does not bind here
    busy_fast(p)
    # overdue, as above; slow-0 would run it in 100 s, so 100 s is the pod's own bound
    p.waits.jobs.add("busy", p.waits.jobs.on("fast-0")[0]._replace(started_s=NOW - 50.0))
    assert p.filter(args(sized("a"), NAMES))["NodeNames"] == []
    clock.now += 98.0
    assert p.filter(args(sized("a"), NAMES))["NodeNames"] == []
    clock.now += 3.0
    assert p.filter(args(sized("a"), NAMES))["NodeNames"] == ["slow-0"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("megagpu.io/waiting-since", "2020-01-01T00:00:00Z"),  # waited long ago: bound passed
        ("megagpu.io/waiting-since", "yesterday-ish"),  # garbled: placed, never stuck
        ("megagpu.io/deadline", "2020-01-01T00:00:00Z"),  # the deadline passed
        ("megagpu.io/deadline", "soon"),
    ],
)
def test_annotations_that_end_the_wait(key, value):
    p, _, _ = make()
    busy_fast(p)
    assert p.filter(args(sized("a", **{key: value}), NAMES))["NodeNames"] == ["slow-0"]


def test_a_restart_keeps_the_first_wait_through_the_annotation():
    p, _, _ = make(max_wait_s=60.0)
    busy_fast(p)
    since = "2027-01-15T08:00:00Z"  # NOW is 2027-01-15T08:00:00Z
    assert convert.parse_time(since).timestamp() == NOW
    p.waits.clock.now = NOW + 61.0  # type: ignore[attr-defined]
    p.waits.jobs.add("busy", p.waits.jobs.on("fast-0")[0]._replace(started_s=NOW + 56.0))
    assert p.filter(args(sized("a"), NAMES))["NodeNames"] == []  # a fresh process would wait
    assert p.filter(args(sized("b", **{"megagpu.io/waiting-since": since}), NAMES))[
        "NodeNames"
    ] == ["slow-0"]


def test_garbled_workload_annotations_get_a_clear_error():
    p, _, _ = make()
    busy_fast(p)
    result = p.filter(args(sized("a", **{"megagpu.io/work-amount": "lots"}), NAMES))
    assert "work-amount is not a number" in result["Error"]


def test_decisions_carry_predictions_for_the_choice_and_alternatives():
    p, rec, _ = make()
    assert p.filter(args(sized("a"), NAMES))["NodeNames"] == NAMES
    p.prioritize(args(sized("a"), NAMES))
    asyncio.run(p.bind(binding("a", "fast-0")))
    decision = json.loads(rec.calls[-1][1]["megagpu.io/decision"])
    assert set(decision) == placement.DECISION_KEYS
    assert decision["predictedSeconds"] == pytest.approx(10.0, rel=0.01)
    assert 0 < decision["predictedSigma"] < 0.2
    (alternative,) = decision["alternatives"]
    assert alternative["node"] == "slow-0"
    assert alternative["predictedSeconds"] == pytest.approx(100.0, rel=0.01)
    # the bound pod is a running job with its prediction until the informer says otherwise
    (job,) = p.waits.jobs.on("fast-0")
    assert job.prediction is not None and job.prediction.seconds == pytest.approx(10.0, rel=0.01)
    p.release("a")
    assert p.waits.jobs.on("fast-0") == []


def chosen(p: placement.Placement, uid: str, **extra: str) -> str:
    """The node prioritize gives the top score to (both nodes free)."""
    p.filter(args(pod(uid, **extra), NAMES))
    answer = p.prioritize(args(pod(uid, **extra), NAMES)).as_list()
    p.release(uid)
    return str(max(answer, key=lambda host: host["Score"])["Host"])


def test_a_device_measured_slower_is_not_tried_whatever_epsilon_says():
    # slow is measured 1.5x slower: within the Q-policy's exploration margin, so an always-
    # exploring epsilon would try it; sampled speeds, measured closely, never pick it
    p, rec, _ = make(policy=trained(slow_s=15.0, epsilon=1.0))
    work = {"megagpu.io/work-amount": "100"}
    assert {chosen(p, f"s{i}", **work) for i in range(60)} == {"fast-0"}
    p.filter(args(sized("r"), NAMES))
    p.prioritize(args(sized("r"), NAMES))
    asyncio.run(p.bind(binding("r", "fast-0")))
    decision = json.loads(rec.calls[-1][1]["megagpu.io/decision"])
    assert decision["mode"] == "exploit"
    assert decision["reason"].startswith("exploit: earliest predicted finish over sampled speeds")


def test_a_device_known_only_by_its_datasheet_is_tried_now_and_then_and_says_so():
    policy = trained()
    for cells in policy.workloads.values():  # forget slow: only the prior speaks for it
        cells.pop("cuda/slow", None)
    for cells in policy.models.values():
        cells.pop("cuda/slow", None)
    # its datasheet puts slow 3.6x behind: within a margin this wide, it is sampled
    policy.params = dataclasses.replace(policy.params, explore_margin=2.0)
    p, rec, _ = make(policy=policy)
    modes = {}
    for i in range(300):
        uid = f"t{i}"
        p.filter(args(sized(uid), NAMES))
        answer = p.prioritize(args(sized(uid), NAMES)).as_list()
        node_ = str(max(answer, key=lambda host: host["Score"])["Host"])
        asyncio.run(p.bind(binding(uid, node_)))
        decision = json.loads(rec.calls[-1][1]["megagpu.io/decision"])
        modes.setdefault(node_, set()).add(decision["mode"])
        p.release(uid)
    assert modes == {"fast-0": {"exploit"}, "slow-0": {"explore"}}


def test_shadow_mode_leaves_the_choice_to_its_baseline():
    policy = trained(slow_s=15.0)
    policy.params = dataclasses.replace(policy.params, mode="shadow", baseline="random")
    p, _, _ = make(policy=policy)
    choices = {chosen(p, f"s{i}", **{"megagpu.io/work-amount": "100"}) for i in range(30)}
    assert choices == {"fast-0", "slow-0"}


def test_forced_binds_carry_the_prediction_of_their_node():
    p, rec, _ = make()
    p.filter(args(sized("f"), ["slow-0"]))
    asyncio.run(p.bind(binding("f", "slow-0")))
    decision = json.loads(rec.calls[-1][1]["megagpu.io/decision"])
    assert decision["mode"] == "forced"
    assert decision["predictedSeconds"] == pytest.approx(100.0, rel=0.01)


def test_job_from_pod_reads_start_and_recorded_prediction():
    bound = sized("r")
    bound["spec"] = {"nodeName": "fast-0"}
    bound["status"] = {"phase": "Running", "startTime": "2027-01-15T08:00:00Z"}
    bound["metadata"]["annotations"].update(
        {
            "megagpu.io/assigned-backend": "cuda",
            "megagpu.io/decision": json.dumps({"predictedSeconds": 12.0, "predictedSigma": 0.1}),
        }
    )
    job = waits.job_from_pod(bound, 0.0)
    assert job is not None and job.started_s == NOW and job.prediction.seconds == 12.0
    bound["metadata"]["annotations"]["megagpu.io/decision"] = "{not json"
    job = waits.job_from_pod(bound, 0.0)
    assert job is not None and job.prediction is None
    bound["metadata"]["annotations"]["megagpu.io/gpus"] = "many"
    assert waits.job_from_pod(bound, 0.0) is None


def test_a_busy_node_kube_scheduler_did_not_ask_about_is_waited_for():
    """kube-scheduler drops a node whose megagpu.io/gpu is all allocated before asking."""
    p, _, _ = make()
    busy_fast(p)
    objects = {n.name: convert.fake_node(n) for n in (FAST, SLOW)}
    p.node_object = objects.get
    one = sized("a")
    one["spec"] = {"nodeSelector": {"megagpu.io/backend.cuda": "true"}}
    result = p.filter(args(one, ["slow-0"]))
    assert result["NodeNames"] == []
    assert result["FailedNodes"]["slow-0"].startswith("waiting for fast-0")
    # a selector the busy node does not match, or a taint on it: no candidate
    one["spec"] = {"nodeSelector": {"zone": "b"}}
    assert p.filter(args(one, ["slow-0"]))["NodeNames"] == ["slow-0"]
    one["spec"] = {}
    objects["fast-0"]["spec"] = {"taints": [{"key": "k", "effect": "NoSchedule"}]}
    assert p.filter(args(one, ["slow-0"]))["NodeNames"] == ["slow-0"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, True),
        ({"nodeSelector": {"gpu": "h100"}}, True),
        ({"nodeSelector": {"gpu": "t4"}}, False),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "gpu", "operator": "In", "values": ["t4"]}
                                    ]
                                },
                                {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]},
                            ]
                        }
                    }
                }
            },
            True,
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "gpu", "operator": "Gt", "values": ["1"]}
                                    ]
                                },
                                {
                                    "matchFields": [
                                        {
                                            "key": "metadata.name",
                                            "operator": "NotIn",
                                            "values": ["n"],
                                        }
                                    ]
                                },
                            ]
                        }
                    }
                }
            },
            False,
        ),
        ({"affinity": "garbled"}, False),
    ],
)
def test_selects(spec, expected):
    node = {"metadata": {"name": "n", "labels": {"gpu": "h100"}}, "spec": {}}
    assert selects.selects({"spec": spec}, node) is expected


GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("tolerations", "node_spec", "expected"),
    [
        ([], {"taints": [GPU_TAINT]}, False),
        ([{"key": "nvidia.com/gpu", "operator": "Exists"}], {"taints": [GPU_TAINT]}, True),
        ([{"key": "nvidia.com/gpu", "value": "present"}], {"taints": [GPU_TAINT]}, True),
        ([{"key": "nvidia.com/gpu", "value": "absent"}], {"taints": [GPU_TAINT]}, False),
        ([{"operator": "Exists"}], {"taints": [GPU_TAINT]}, True),  # tolerates everything
        ([{"operator": "Exists", "effect": "NoExecute"}], {"taints": [GPU_TAINT]}, False),
        ([{"key": "x", "operator": "Exists"}], {"taints": [GPU_TAINT]}, False),
        ([], {"taints": [{**GPU_TAINT, "effect": "PreferNoSchedule"}]}, True),
        ([{"operator": "Exists"}], {"unschedulable": True}, False),  # cordoned
    ],
)
def test_taints_are_matched_against_the_pods_tolerations(tolerations, node_spec, expected):
    node = {"metadata": {"name": "n", "labels": {}}, "spec": node_spec}
    assert selects.selects({"spec": {"tolerations": tolerations}}, node) is expected


def test_wants_reads_the_pods_selectors_only_not_taints_nor_a_cordon():
    pinned = {"spec": {"nodeSelector": {"gpu": "h100"}}}
    held = {"metadata": {"name": "n", "labels": {"gpu": "h100"}}}
    held["spec"] = {"taints": [GPU_TAINT], "unschedulable": True}
    assert selects.wants(pinned, held) and not selects.selects(pinned, held)
    other = {"metadata": {"name": "n", "labels": {"gpu": "t4"}}, "spec": {}}
    assert not selects.wants(pinned, other)
    assert not selects.wants({"spec": {"nodeSelector": "garbled"}}, held)
