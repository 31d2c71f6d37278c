"""The Q-state store against a real API server (issue 19): a merge patch that carries the
resourceVersion is a compare-and-swap, two writers lose no update, and the operator learns an
outcome with one small patch (state.json plus one bucket of learned UIDs)."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from megagpu.core import model
from megagpu.devcluster import components
from megagpu.kube import names, qstore
from megagpu.operator import outcomes
from tests.e2e import gw as g
from tests.helpers import node

NODE = node("n1", "h100", devices=8, fp16=800.0, gbps=3000.0)


def outcome(i: int) -> model.Outcome:
    workload = model.Workload(
        uid=f"w{i}", workload_type="inference", model="m", gpus=1, backends=("cuda",)
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


def test_two_writers_on_a_real_api_server_lose_no_update(api, namespace):
    core = client.CoreV1Api(api)
    a, b = qstore.Store(core, namespace), qstore.Store(core, namespace)
    outcomes.learn(a, outcome(0), [NODE])
    seen_a, seen_b = a.load(), b.load()
    assert seen_a.policy is not None and seen_b.policy is not None
    seen_a.policy.observe(outcome(1))
    a.save(seen_a.policy, seen_a.resource_version)  # a merge patch of the changed keys
    seen_b.policy.observe(outcome(2))
    with pytest.raises(qstore.Conflict):  # the API server refuses b's stale patch
        b.save(seen_b.policy, seen_b.resource_version)
    with pytest.raises(qstore.Conflict):  # and a stale whole replace
        qstore.Store(core, namespace).save(seen_b.policy, seen_b.resource_version)
    outcomes.learn(b, outcome(2), [NODE])
    outcomes.learn(a, outcome(3), [NODE])  # a's known state is stale: conflict, read, save
    final = qstore.Store(core, namespace).load().policy
    assert final is not None and final.updates == 4
    assert {outcome(i).uid for i in range(4)} <= set(final.learned_uids)
    cm = core.read_namespaced_config_map(names.STATE_CONFIGMAP, namespace)
    assert json.loads(cm.data["state.json"])["learned_uids"] == []
    assert any(k.startswith(qstore.UIDS) for k in cm.data)


def test_the_operator_learns_with_state_json_and_one_bucket(api, namespace):
    core = client.CoreV1Api(api)
    g.create(api, namespace, g.manifest("first", "inference", "llama3-8b-q4", 1, ["cuda"]))
    g.wait_phase(api, namespace, "first", ("Succeeded", "Failed"), 120)  # the state exists
    before = core.read_namespaced_config_map(names.STATE_CONFIGMAP, components.NAMESPACE)
    updates = g.policy_status(api).get("updates", 0)
    g.create(api, namespace, g.manifest("one", "inference", "llama3-8b-q4", 1, ["cuda"]))
    status = g.wait_phase(api, namespace, "one", ("Succeeded", "Failed"), 120)["status"]
    assert status["phase"] == "Succeeded", status
    pod = core.read_namespaced_pod(status["podName"], namespace)
    after = core.read_namespaced_config_map(names.STATE_CONFIGMAP, components.NAMESPACE)
    changed = {k for k, v in after.data.items() if (before.data or {}).get(k) != v}
    assert changed <= {qstore.KEY, qstore.bucket(pod.metadata.uid)}, changed
    assert pod.metadata.uid in json.loads(after.data[qstore.bucket(pod.metadata.uid)])
    assert json.loads(after.data[qstore.KEY])["learned_uids"] == []
    assert g.policy_status(api)["updates"] == updates + 1
