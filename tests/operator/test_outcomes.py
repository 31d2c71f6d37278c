import datetime as dt
import json

from megagpu.core import qpolicy
from megagpu.kube import convert, qstore
from megagpu.operator import outcomes, status
from tests.helpers import node

NODE = node("h100-0", "h100", devices=8, fp16=800.0, gbps=3000.0)


def pod(phase="Succeeded", code=0, decision=None, work="100"):
    annotations = {
        "megagpu.io/gpus": "1",
        "megagpu.io/backends": "cuda",
        "megagpu.io/model": "m",
        "megagpu.io/workload-type": "inference",
        "megagpu.io/assigned-backend": "cuda",
        "megagpu.io/sim-work": work,
    }
    if decision:
        annotations["megagpu.io/decision"] = json.dumps(decision)
    terminated = {
        "exitCode": code,
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:50Z",
        "reason": "OOMKilled" if code else None,
    }
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


def test_outcome_uses_sim_work_and_deadline():
    created = dt.datetime(2025, 12, 31, 23, 59, 30, tzinfo=dt.UTC)
    out = outcomes.outcome_of(pod(), outcomes.terminal(pod()), NODE, 30, created)
    assert out.throughput == 2.0 and out.deadline_missed
    assert outcomes.outcome_of(pod(), outcomes.terminal(pod()), None, None, None) is None


class FakeStore:
    """A store whose save conflicts once, like a concurrent writer."""

    def __init__(self):
        self.policy, self.version, self.conflicts = None, None, 1

    def load(self):
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
