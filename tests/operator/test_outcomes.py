import datetime as dt
import json
import math

import pytest

from megagpu.core import qpolicy, qstate
from megagpu.kube import convert, qstore
from megagpu.operator import outcomes, status
from tests.helpers import node

NODE = node("h100-0", "h100", devices=8, fp16=800.0, gbps=3000.0)


def pod(phase="Succeeded", code=0, decision=None, work="100", message=None):
    annotations = {
        "megagpu.io/gpus": "1",
        "megagpu.io/backends": "cuda",
        "megagpu.io/model": "m",
        "megagpu.io/workload-type": "inference",
        "megagpu.io/assigned-backend": "cuda",
        "megagpu.io/sim-work": "7",  # the simulated runtime's own: never read by learning
    }
    if work is not None:
        annotations |= {"megagpu.io/work-amount": work, "megagpu.io/work-unit": "tokens"}
    if decision:
        annotations["megagpu.io/decision"] = json.dumps(decision)
    terminated = {
        "exitCode": code,
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:50Z",
        "reason": "OOMKilled" if code else None,
    }
    if message is not None:
        terminated["message"] = message
    return {
        "metadata": {
            "uid": "p-1",
            "labels": {"megagpu.io/workload": "w"},
            "annotations": annotations,
        },
        "spec": {"nodeName": "h100-0"},
        "status": {"phase": phase, "containerStatuses": [{"state": {"terminated": terminated}}]},
    }


def test_terminal_reads_duration_and_reason():
    end = outcomes.terminal(pod())
    assert end.succeeded and end.duration_s == 50
    failed = outcomes.terminal(pod("Failed", code=137))
    assert not failed.succeeded and failed.reason == "OOMKilled"
    assert outcomes.terminal({"status": {"phase": "Running"}}) is None


def test_no_decision_means_fallback():
    assert outcomes.decision(pod())["mode"] == "fallback"
    assert outcomes.decision(pod(decision={"mode": "explore"}))["mode"] == "explore"


def test_outcome_uses_the_declared_work_and_deadline():
    created = dt.datetime(2025, 12, 31, 23, 59, 30, tzinfo=dt.UTC)
    out = outcomes.outcome_of(pod(), outcomes.terminal(pod()), NODE, 30, created)
    assert out.throughput == 2.0 and out.deadline_missed and out.work_source == "declared"
    assert outcomes.outcome_of(pod(), outcomes.terminal(pod()), None, None, None) is None


def outcome(p):
    return outcomes.outcome_of(p, outcomes.terminal(p), NODE, None, None)


def test_a_report_wins_over_the_declaration():
    reported = pod(message=json.dumps({"megagpu.io/work": 150, "megagpu.io/work-unit": "tokens"}))
    out = outcome(reported)
    assert (out.work, out.work_source, out.throughput) == (150, "reported", 3.0)
    alone = outcome(pod(work=None, message='{"megagpu.io/work": 25}'))
    assert (alone.work_source, alone.throughput) == ("reported", 0.5)


def test_without_report_or_declaration_the_size_is_unknown():
    out = outcome(pod(work=None, message='{"other": 1}'))
    assert out.work is None and out.work_source == "none" and out.throughput == 0.0
    assert out.succeeded and not out.sized
    assert outcomes.size_of(pod(work=None)).problem is None


def test_a_success_within_one_second_is_a_success_of_no_speed():
    """A real container that ran under a second: the kubelet's start and end are the same
    second. It succeeded; its run time is below the resolution, so it is not read as a speed."""
    quick = pod(message=json.dumps({"megagpu.io/work": 150, "megagpu.io/work-unit": "tokens"}))
    quick["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = (
        "2026-01-01T00:00:00Z"
    )
    end = outcomes.terminal(quick)
    assert end.succeeded and end.duration_s == 0
    out = outcome(quick)
    assert out.succeeded and not out.sized and out.throughput == 0.0
    store = FakeStore()
    store.conflicts = 0
    learned = outcomes.learn(store, out, [NODE])
    assert learned.new and learned.reward > -store.policy.params.rewards.failure_penalty


BAD_REPORTS = {
    "not JSON": ("Killed after 3 epochs", "not a JSON object"),
    "not an object": ("[1, 2]", "not a JSON object"),
    "negative": ('{"megagpu.io/work": -5}', "must be a number > 0"),
    "zero": ('{"megagpu.io/work": 0}', "must be a number > 0"),
    "NaN": ('{"megagpu.io/work": NaN}', "must be a number > 0"),
    "infinite": ('{"megagpu.io/work": 1e999}', "must be a number > 0"),
    "a string": ('{"megagpu.io/work": "100"}', "must be a number > 0"),
    "a boolean": ('{"megagpu.io/work": true}', "must be a number > 0"),
    "another unit": ('{"megagpu.io/work": 100, "megagpu.io/work-unit": "steps"}', "differs"),
    "far outside": ('{"megagpu.io/work": 100000}', "more than 10x away"),
    "far below": ('{"megagpu.io/work": 0.5}', "more than 10x away"),
}


@pytest.mark.parametrize("case", BAD_REPORTS)
def test_a_bad_report_is_learned_without_a_size_and_says_why(case):
    message, why = BAD_REPORTS[case]
    bad = pod(message=message)
    bad["metadata"]["uid"] = "p-2"
    size = outcomes.size_of(bad)
    assert size.source == "none" and why in size.problem and "without a size" in size.problem
    out = outcome(bad)
    assert out.work_source == "none" and out.throughput == 0.0
    store = FakeStore()
    store.conflicts = 0
    before = outcomes.learn(store, outcome(pod()), [NODE]).policy
    learned = outcomes.learn(store, out, [NODE])
    assert learned.new and math.isfinite(learned.reward)
    state = qstate.loads(qstate.dumps(store.policy))  # still a valid Q-state
    assert state.drift == before.drift and state.updates == 2
    wkey, _ = state.keys(out.workload)
    assert state.workloads[wkey]["cuda/h100"].throughput == pytest.approx(2.0)


def test_a_garbled_sidecar_message_does_not_hide_a_report():
    p = pod(message="sidecar: bye")
    p["status"]["containerStatuses"].append(
        {
            "state": {
                "terminated": {
                    **p["status"]["containerStatuses"][0]["state"]["terminated"],
                    "message": '{"megagpu.io/work": 120}',
                }
            }
        }
    )
    assert outcomes.size_of(p).source == "reported" and outcome(p).work == 120


class FakeStore:
    """A store whose save conflicts once, like a concurrent writer."""

    def __init__(self):
        self.policy, self.version, self.conflicts = None, None, 1

    def load(self, cached=False):
        from megagpu.core import qstate

        policy = qstate.loads(qstate.dumps(self.policy)) if self.policy else None
        return qstore.Loaded(policy, self.version, None)

    def history(self):
        return []

    def save(self, policy, version):
        if self.conflicts:
            self.conflicts -= 1
            raise qstore.Conflict("someone else saved")
        self.policy, self.version = policy, str(int(version or 0) + 1)
        return self.version


def test_learn_retries_conflicts_and_learns_once():
    store = FakeStore()
    out = outcomes.outcome_of(pod(), outcomes.terminal(pod()), NODE, None, None)
    first = outcomes.learn(store, out, [NODE])
    assert first.new and store.policy.updates == 1 and store.policy.decisions == 1
    again = outcomes.learn(store, out, [NODE])
    assert not again.new and store.policy.updates == 1


def test_conditions_keep_transition_time_when_status_is_unchanged():
    old = [{**status.condition("Running", True, "Started"), "lastTransitionTime": "T0"}]
    merged = status.merge(old, status.condition("Running", True, "Started"))
    assert merged[0]["lastTransitionTime"] == "T0"
    flipped = status.merge(old, status.condition("Running", False, "Completed"))
    assert flipped[0]["lastTransitionTime"] != "T0"


def test_policy_status_phase():
    policy = qpolicy.QPolicy()
    assert convert.policy_status(policy, "cm", "T")["phase"] == "Exploring"
