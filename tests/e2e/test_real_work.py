"""Real work on a real node (issue 15): the example `megagpu bench-workload` GpuWorkload runs
in a real container, and the operator learns from the work that container reported."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator

import pytest
from kubernetes import client

from megagpu.core import features, qpolicy
from megagpu.devcluster import components, demo
from megagpu.kube import convert, names, qstore
from megagpu.operator import tools
from tests.e2e import gw as g
from tests.e2e import real

EXAMPLE = "bench-gemm-cpu"
"""numpy GEMM on the CPU: the real node offers cpu, and cuda only through simulated devices
(the image has no cupy), so cpu is the backend that does real work there."""
WORK_GFLOP = 1500
"""Seconds of GEMM (the example's 50 take well under one here): the kubelet's container times
have 1 s resolution, and a run measured at 0 s is a success of no speed."""


@pytest.fixture
def fresh_policy(api: client.ApiClient) -> Iterator[qstore.Store]:
    """The Q-state reset to priors (what other tests learned must not set the reward); the
    state found is put back."""
    store = qstore.Store(client.CoreV1Api(api), components.NAMESPACE)
    try:
        saved: str | None = tools.export(store)
    except tools.ToolError:  # nothing learned yet
        saved = None
    tools.reset(store)
    yield store
    if saved is not None:
        tools.import_(store, saved)
    else:
        tools.reset(store)


def seen_by(policy: qpolicy.QPolicy | None, pod: dict, akey: str) -> float:
    """Sized outcomes (a report counts 1, a declaration less) learned for ``pod``'s workload
    key on ``akey``."""
    if policy is None:
        return 0.0
    wkey, _ = policy.keys(convert.workload_from_pod(pod))
    cell = policy.workloads.get(wkey, {}).get(akey)
    return 0.0 if cell is None else cell.seen


def test_real_work_completes_with_measured_duration_and_a_reward_from_its_report(
    api, namespace, real_node, fresh_policy
):
    core, store = client.CoreV1Api(api), fresh_policy
    body = copy.deepcopy(next(e for e in demo.examples() if e["metadata"]["name"] == EXAMPLE))
    body["metadata"] = {"name": "bench"}
    real.pin(body, real_node)
    args = body["spec"]["template"]["spec"]["containers"][0]["args"]
    args[args.index("--work") + 1] = str(WORK_GFLOP)
    raw = json.loads(core.read_node(real_node, _preload_content=False).data)
    akey = features.action_key("cpu", convert.node_from_k8s(raw).device_class)
    before = store.load().policy

    g.create(api, namespace, body)
    status = g.wait_phase(api, namespace, "bench", ("Succeeded", "Failed"), 300)["status"]
    pod = json.loads(
        core.read_namespaced_pod(status["podName"], namespace, _preload_content=False).data
    )
    (container,) = pod["status"]["containerStatuses"]
    ended = container["state"]["terminated"]
    assert status["phase"] == "Succeeded", (status, ended)
    assert status["node"] == real_node and status["backend"] == "cpu", status
    assert container["containerID"].startswith("containerd://"), "not run by the real kubelet"
    reported = json.loads(ended["message"])
    assert reported[names.REPORT_WORK] >= WORK_GFLOP, reported
    assert reported[names.REPORT_UNIT] == "GFLOP", reported
    assert reported["backend"] == "cpu", reported

    # The measured run time, and a reward learned with the work the container reported.
    assert status["durationSeconds"] > 0, status
    assert isinstance(status["reward"], float | int) and math.isfinite(status["reward"]), status
    # From priors only, the first real run is within the prior's speed ratios of the fleet's
    # other cpu devices: neither the failure penalty nor the floor (both -3).
    floor = qpolicy.Params().rewards.floor
    assert status["reward"] > floor, status
    assert status["work"] == {
        "amount": reported[names.REPORT_WORK],
        "unit": "GFLOP",
        "source": "reported",
    }, status
    assert status["decision"]["workSource"] == "reported", status
    policy = store.load().policy
    assert policy is not None and pod["metadata"]["uid"] in policy.learned_uids
    # One more outcome sized by a report (weight 1; a declared size would add less).
    learned = seen_by(policy, pod, akey) - seen_by(before, pod, akey)
    assert learned == 1.0, f"the outcome added {learned} to the sized outcomes of {akey}"
    print(
        f"\n{reported[names.REPORT_WORK]} GFLOP in {status['durationSeconds']} s "
        f"(container: {reported['seconds']} s of GEMM); reward {status['reward']}"
    )


def test_the_example_as_shipped_is_learned_as_a_success(api, namespace, real_node, fresh_policy):
    """Its 50 GFLOP take under a second here, which the kubelet's 1 s container times may
    measure as 0 s: still a success (of no speed then), never the failure penalty."""
    body = copy.deepcopy(next(e for e in demo.examples() if e["metadata"]["name"] == EXAMPLE))
    body["metadata"] = {"name": "as-shipped"}
    g.create(api, namespace, real.pin(body, real_node))
    status = g.wait_phase(api, namespace, "as-shipped", ("Succeeded", "Failed"), 300)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["work"]["source"] == "reported", status
    assert status["reward"] > qpolicy.Params().rewards.floor, status
    print(f"\nas shipped: {status['durationSeconds']} s measured, reward {status['reward']}")
