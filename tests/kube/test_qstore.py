"""The Q-state store: compare-and-swap, bounded writes, retries of a refusing API server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from megagpu.core import model, qpolicy, qstate
from megagpu.kube import qstore, retry
from megagpu.operator import outcomes
from tests.helpers import node
from tests.kube.fake_configmaps import ConfigMaps

NODE = node("n1", "h100", devices=8, fp16=800.0, gbps=3000.0)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", slept.append)
    return slept


def outcome(i: int, classes: int = 50) -> model.Outcome:
    workload = model.Workload(
        uid=f"w{i}", workload_type="inference", model=f"m{i % classes}", gpus=1, backends=("cuda",)
    )
    return model.Outcome(
        uid=f"{i:08d}-0000-4000-8000-000000000000",
        workload=workload,
        node="n1",
        backend="cuda",
        device_class="h100",
        duration_s=10.0,
        work=100.0,
        work_source="reported",
    )


def store(api: ConfigMaps | None = None, **kwargs: Any) -> qstore.Store:
    return qstore.Store(api or ConfigMaps(), "megagpu-system", **kwargs)  # type: ignore[arg-type]


def test_values_and_uids_round_trip() -> None:
    s = store()
    for i in range(5):
        outcomes.learn(s, outcome(i), [NODE])
    policy = s.load().policy
    assert policy is not None and policy.updates == 5
    assert list(policy.learned_uids)[-1] == outcome(4).uid
    data = s.core.objects["megagpu-policy-state"]["data"]  # type: ignore[attr-defined]
    # state.json alone is a valid document (what tools and tests read), without the UIDs
    assert qstate.loads(data["state.json"]).updates == 5
    assert json.loads(data["state.json"])["learned_uids"] == []
    assert {u for k, v in data.items() if k != "state.json" for u in json.loads(v)} == {
        outcome(i).uid for i in range(5)
    }


def test_an_update_writes_the_document_and_one_bucket_not_every_uid() -> None:
    s = store(history_interval_s=1e9)
    full = qpolicy.QPolicy()  # a full window of learned UIDs
    full.remember_learned(outcome(i).uid for i in range(qpolicy.LEARNED_UIDS))
    s.save(full, None)
    outcomes.learn(s, outcome(4999), [NODE])
    state = len(s.core.objects["megagpu-policy-state"]["data"]["state.json"])  # type: ignore[attr-defined]
    before = s.bytes_written
    outcomes.learn(s, outcome(5000), [NODE])
    written = s.bytes_written - before
    assert written < state + 2 * qstore.PER_BUCKET * 40, (written, state)
    assert s.load().policy is not None and outcome(5000).uid in s.load().policy.learned_uids


def test_a_bucket_keeps_its_newest_uids() -> None:
    policy = qpolicy.QPolicy()
    uids = [f"u{i}" for i in range(qstore.PER_BUCKET * qstore.BUCKETS * 2)]
    policy.remember_learned(uids)
    data = qstore.to_data(policy, {})
    for key, text in data.items():
        if key.startswith(qstore.UIDS):
            listed = json.loads(text)
            assert len(listed) <= qstore.PER_BUCKET
            mine = [u for u in list(policy.learned_uids) if qstore.bucket(u) == key]
            assert listed == mine[-qstore.PER_BUCKET :]


def test_a_document_with_its_uids_inside_is_read_and_moved_to_buckets() -> None:
    api = ConfigMaps()
    old = qpolicy.QPolicy()
    old.remember_learned(["a", "b"])
    data = {"state.json": qstate.dumps(old)}
    api.objects["megagpu-policy-state"] = {"data": data, "rv": "7", "labels": {}}
    s = store(api)
    loaded = s.load()
    assert loaded.policy is not None and set(loaded.policy.learned_uids) == {"a", "b"}
    s.save(loaded.policy, loaded.resource_version)
    again = s.load().policy
    assert again is not None and set(again.learned_uids) == {"a", "b"}
    stored = api.objects["megagpu-policy-state"]["data"]["state.json"]
    assert json.loads(stored)["learned_uids"] == []


def test_concurrent_writers_lose_no_update() -> None:
    api = ConfigMaps()
    a, b = store(api), store(api)
    outcomes.learn(a, outcome(0), [NODE])
    # b read before a saved: its compare-and-swap conflicts, it reloads and learns on top
    loaded_a, loaded_b = a.load(), b.load()
    assert loaded_a.policy is not None and loaded_b.policy is not None
    loaded_a.policy.observe(outcome(1))
    a.save(loaded_a.policy, loaded_a.resource_version)
    loaded_b.policy.observe(outcome(2))
    with pytest.raises(qstore.Conflict):
        b.save(loaded_b.policy, loaded_b.resource_version)
    outcomes.learn(b, outcome(2), [NODE])
    final = a.load().policy
    assert final is not None and final.updates == 3
    assert {outcome(i).uid for i in range(3)} <= set(final.learned_uids)


def test_a_save_based_on_another_stores_read_replaces_the_whole_object_guarded() -> None:
    api = ConfigMaps()
    a = store(api)
    outcomes.learn(a, outcome(0), [NODE])
    loaded = a.load()
    assert loaded.policy is not None
    loaded.policy.observe(outcome(1))
    fresh = store(api)  # it has read nothing: it cannot know which keys changed
    calls = len(api.calls)
    fresh.save(loaded.policy, loaded.resource_version)
    assert "update" in api.calls[calls:] and "patch" not in api.calls[calls:]
    with pytest.raises(qstore.Conflict):
        fresh.save(loaded.policy, loaded.resource_version)  # stale now


@pytest.mark.parametrize("status", [429, 500, 503, 504])
def test_a_refusing_api_server_is_retried_and_the_update_lands_once(
    status: int, no_sleep: list[float]
) -> None:
    api = ConfigMaps()
    s = store(api)
    outcomes.learn(s, outcome(0), [NODE])
    api.fail = [status, status]  # the patch, twice
    learned = outcomes.learn(s, outcome(1), [NODE])
    assert learned.new and len(no_sleep) == 2 and no_sleep[1] > no_sleep[0]
    policy = s.load().policy
    assert policy is not None and policy.updates == 2


def test_a_write_applied_but_unanswered_is_not_learned_twice() -> None:
    api = ConfigMaps()
    s = store(api)
    outcomes.learn(s, outcome(0), [NODE])
    api.applied_then_fail = [503]  # the patch lands, its reply is lost; the retry conflicts
    learned = outcomes.learn(s, outcome(1), [NODE])
    policy = s.load().policy
    assert policy is not None and policy.updates == 2 and not learned.new


def test_a_refusal_that_outlasts_the_backoff_is_raised() -> None:
    api = ConfigMaps()
    s = store(api)
    api.fail = [500] * retry.BACKOFF.steps
    with pytest.raises(Exception, match="500"):
        s.load()


def test_learning_keeps_a_snapshot_per_interval_and_tools_always() -> None:
    clock = [0.0]
    api = ConfigMaps()
    s = store(api, history_interval_s=60.0, clock=lambda: clock[0])
    for i in range(5):
        outcomes.learn(s, outcome(i), [NODE])
    assert [v for v, _ in s.history()] == [1]
    clock[0] = 61.0
    outcomes.learn(s, outcome(9), [NODE])
    assert [v for v, _ in s.history()] == [1, 6]
    loaded = s.load()
    assert loaded.policy is not None
    loaded.policy.version += 1  # as the tools save: the next version
    s.save(loaded.policy, loaded.resource_version, snapshot=True)
    assert [v for v, _ in s.history()] == [1, 6, 7]


def test_a_writer_alone_learns_with_one_call_and_rereads_after_a_conflict() -> None:
    api = ConfigMaps()
    a, b = store(api, history_interval_s=1e9), store(api, history_interval_s=1e9)
    outcomes.learn(a, outcome(0), [NODE])
    calls = len(api.calls)
    outcomes.learn(a, outcome(1), [NODE])
    assert api.calls[calls:] == ["patch"]
    outcomes.learn(b, outcome(2), [NODE])  # another writer: a's known state is stale now
    calls = len(api.calls)
    outcomes.learn(a, outcome(3), [NODE])
    assert api.calls[calls:] == ["patch", "get", "patch"]
    final = a.load().policy
    assert final is not None and final.updates == 4


def test_a_deleted_state_is_created_again() -> None:
    api = ConfigMaps()
    s = store(api)
    outcomes.learn(s, outcome(0), [NODE])
    del api.objects["megagpu-policy-state"]
    outcomes.learn(s, outcome(1), [NODE])
    assert "megagpu-policy-state" in api.objects
