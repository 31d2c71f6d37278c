"""Waiting as a decision through the real kube-scheduler (issue 18).

Two fake nodes made here, one H100 and one T4 of one device each, pinned by a label. The Q-state
is seeded with what a policy would have learned from 30 reported runs of the class on each
(true speeds from the simulated runtime, declarations that matched the reports), so the
predictions are sharp and the test deterministic; the state and the policy's epsilon found are
put back after. A long job takes the H100; its size is declared 6x too small, so it overruns
its prediction and keeps looking "about to finish". Then:

- ``waiter`` (fast on the H100, 12.8x slower on the T4) stays pending while the T4 is free: the
  extender's filter fails every node with "waiting for <h100>: predicted finish ... vs ...",
  the operator records a Waiting Event and the pod's first wait; it is placed on the H100 when
  the long job ends;
- ``impatient``, alike but with a 30 s deadline, waits too, and is placed on the free T4 once
  its bound has passed, whatever the (wrong) predictions say, long before the H100 frees: no
  starvation.

The decisions carry predictions. The prediction error (actual over predicted run time) of the
truly declared jobs is printed and must be small, as the seeded speeds are the runtime's.

Time: the simulated runtime reports each pod's run time in simulated seconds (its real run time
over the time scale, 1/3600), which is what the operator learns from, while the extender's
clock (pods' start times, the wait bounds) is real. The seeded speeds are per real second, so
that predictions and the clock agree; the error is computed on the real run time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import statistics
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from megagpu.core import model, qpolicy, qstate
from megagpu.devcluster import components, runtime
from megagpu.kube import convert, names, qstore, render
from megagpu.operator import publish, tools
from tests.e2e import fake_nodes
from tests.e2e import gw as g
from tests.e2e.test_extender import METRICS, requests_by_verb
from tests.e2e.test_scheduler_extender import wait_for

MODEL = "resnet-50-bs64"
LONG_S, LONG_DECLARED_S = 120.0, 20.0
"""Real seconds the long job runs on the H100, and what its declared size predicts there."""
WAITER_S, IMPATIENT_S, DEADLINE_S = 12.0, 4.0, 30
"""Real seconds the waiting jobs run on the H100 (x12.8 on the T4), the impatient's deadline."""
TABLES = runtime.load_tables()
QUIET = {"start": 0.0, "min": 0.0, "decay": 0.99}
"""No exploration: every placement is the policy's best."""


def nodes(label: str) -> list[model.Node]:
    return [
        model.Node(
            f"wait-h100-{label}", "h100", ("cuda",), 1, 81920, model.Benchmarks(67, 989, 3350)
        ),
        model.Node(f"wait-t4-{label}", "t4", ("cuda",), 1, 16384, model.Benchmarks(8.1, 65, 320)),
    ]


@pytest.fixture
def pair(api: client.ApiClient) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The two fake nodes, labelled so the test's workloads can be pinned to them."""
    label = uuid.uuid4().hex[:6]
    bodies = [convert.fake_node(node) for node in nodes(label)]
    core = client.CoreV1Api(api)

    def schedulable(name: str) -> bool:
        node = core.read_node(name)
        conditions = node.status.conditions or []
        ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
        return ready and not node.spec.taints

    with fake_nodes.made(api, label, bodies):
        for name in (b["metadata"]["name"] for b in bodies):  # else one may be the only candidate
            wait_for(lambda name=name: schedulable(name), 60, f"{name} ready and untainted")
        yield label, bodies


def manifest(
    name: str,
    label: str,
    real_s: float,
    fast: dict[str, Any],
    declared_s: float | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A workload that runs ``real_s`` real seconds on ``fast`` (declared: ``declared_s``)."""
    work = real_s / per_unit_s(fast)
    declared = {"amount": (declared_s or real_s) / per_unit_s(fast), "unit": "samples"}
    body = g.manifest(name, "training", MODEL, 1, ["cuda"], work=declared, **spec)
    template = body["spec"]["template"]
    template["metadata"]["annotations"][names.ANN_SIM_WORK] = repr(work)
    template["spec"]["nodeSelector"] = {"megagpu.io/e2e": label}
    return body


def rendered(body: dict[str, Any]) -> dict[str, Any]:
    gw = {**body, "metadata": {**body["metadata"], "namespace": "x", "uid": "u"}}
    pod = render.render_pod(gw, 1)
    pod["metadata"]["annotations"] |= {names.ANN_ASSIGNED_BACKEND: "cuda", names.ANN_SIM_WORK: "1"}
    return pod


def per_unit_s(node: dict[str, Any]) -> float:
    """Real seconds one unit of work of the test's class takes on ``node``."""
    probe = g.manifest("probe", "training", MODEL, 1, ["cuda"], work={"amount": 1.0})
    return runtime.run_seconds(rendered(probe), node, TABLES).seconds * runtime.DEFAULT_TIME_SCALE


def seeded_state(made: list[dict[str, Any]], label: str) -> str:
    """A Q-state that has seen 30 reported runs of the class on each node's device, truly."""
    policy = qpolicy.QPolicy(qpolicy.Params(epsilon_start=0.0, epsilon_min=0.0, epsilon_decay=0.99))
    workload = convert.workload_from_pod(rendered(manifest("seed", label, 1.0, made[0])))
    for i in range(30):
        for node in made:
            seconds = 10.0
            work = seconds / per_unit_s(node)
            device = convert.node_from_k8s(node).device_class
            policy.observe(
                model.Outcome(
                    uid=f"seed-{device}-{i}",
                    workload=dataclasses.replace(
                        workload, uid=f"seed-{i}", declared=model.Work(work, "samples")
                    ),
                    node=node["metadata"]["name"],
                    backend="cuda",
                    device_class=device,
                    duration_s=seconds,
                    work=work,
                    work_source="reported",
                )
            )
    return qstate.dumps(policy)


@pytest.fixture
def seeded(api: client.ApiClient, pair: tuple[str, list[dict[str, Any]]]) -> Iterator[None]:
    """The seeded Q-state and no exploration; the state and epsilon found are put back."""
    label, made = pair
    store = qstore.Store(client.CoreV1Api(api), components.NAMESPACE)
    custom = client.CustomObjectsApi(api)
    policy = (names.GROUP, names.VERSION, names.POLICIES, names.POLICY_NAME)
    try:
        saved = tools.export(store)
    except tools.ToolError:
        saved = None
    old = (custom.get_cluster_custom_object(*policy).get("spec") or {}).get("epsilon")
    version = tools.import_(store, seeded_state(made, label))
    custom.patch_cluster_custom_object(*policy, {"spec": {"epsilon": QUIET}})

    def loaded() -> bool:
        current = store.load().policy
        return current is not None and current.version >= version and current.epsilon == 0.0

    wait_for(loaded, timeout_s=60, what="the seeded Q-state")
    wait_for(lambda: extender_policy_version() >= version, 60, "the extender to load it")
    try:
        yield
    finally:
        custom.patch_cluster_custom_object(*policy, {"spec": {"epsilon": old}})
        if saved is not None:
            tools.import_(store, saved)
        else:
            tools.reset(store)
        restored = store.load().policy
        if restored is not None:  # the policy's status counts as the state found again
            publish.Publisher().publish(custom, restored)


def extender_policy_version() -> float:
    with urllib.request.urlopen(METRICS, timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^megagpu_extender_policy_version ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else -1.0


def events(api: client.ApiClient, namespace: str, name: str, reason: str) -> list[Any]:
    listed = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [e for e in listed.items if e.reason == reason]


def pod_of(api: client.ApiClient, namespace: str, name: str) -> client.V1Pod | None:
    pods = (
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector=f"{names.LABEL_WORKLOAD}={name}")
        .items
    )
    return pods[0] if pods else None


def test_a_pod_waits_for_a_faster_busy_node_and_a_bound_one_is_placed(api, namespace, pair, seeded):
    label, made = pair
    fast, slow = (n["metadata"]["name"] for n in made)
    verbs = requests_by_verb()
    g.create(api, namespace, manifest("long", label, LONG_S, made[0], LONG_DECLARED_S))
    long = g.wait_phase(api, namespace, "long", ("Running",), timeout_s=60)
    assert long["status"]["node"] == fast, long["status"].get("decision")
    assert long["status"]["decision"]["predictedSeconds"] == pytest.approx(LONG_DECLARED_S, rel=0.2)
    g.create(api, namespace, manifest("waiter", label, WAITER_S, made[0]))
    late = manifest("impatient", label, IMPATIENT_S, made[0], deadlineSeconds=DEADLINE_S)
    g.create(api, namespace, late)

    def waiting(name: str) -> str | None:
        pod = pod_of(api, namespace, name)
        for c in (pod.status.conditions or []) if pod else []:
            if c.type == "PodScheduled" and c.status == "False" and "waiting for" in c.message:
                return str(c.message)
        return None

    try:
        message = wait_for(lambda: waiting("waiter"), timeout_s=60, what="waiter to wait")
    except AssertionError as e:
        pod = pod_of(api, namespace, "waiter")
        seen = (pod.spec.node_name, pod.status.conditions) if pod else None
        raise AssertionError(f"{e}; waiter's pod: {seen}") from e
    assert f"waiting for {fast}: predicted finish" in message and f"on {slow}" in message
    wait_for(lambda: events(api, namespace, "waiter", "Waiting"), 60, "a Waiting Event")
    wait_for(
        lambda: (
            names.ANN_WAITING_SINCE in (pod_of(api, namespace, "waiter").metadata.annotations or {})
        ),
        60,
        "the first wait recorded on the pod",
    )
    wait_for(lambda: waiting("impatient"), timeout_s=30, what="impatient to wait")
    # its bound passes long before the H100 frees: placed on the T4
    impatient = g.wait_phase(api, namespace, "impatient", ("Running", "Succeeded"), timeout_s=80)
    assert impatient["status"]["node"] == slow
    assert g.get(api, namespace, "waiter")["status"].get("phase") in (None, "Pending", "Scheduling")
    assert g.get(api, namespace, "long")["status"]["phase"] == "Running"
    # the H100 frees: the waiter goes there
    waiter = g.wait_phase(api, namespace, "waiter", ("Succeeded",), timeout_s=LONG_S + 90)
    assert waiter["status"]["node"] == fast
    decision = waiter["status"]["decision"]
    assert decision["predictedSeconds"] == pytest.approx(WAITER_S, rel=0.2)
    assert 0 < decision["predictedSigma"] < 0.3
    impatient = g.wait_phase(api, namespace, "impatient", ("Succeeded",), timeout_s=90)
    long = g.wait_phase(api, namespace, "long", ("Succeeded",), timeout_s=30)

    def ratio(gw: dict[str, Any]) -> float:
        real_s = gw["status"]["durationSeconds"] * runtime.DEFAULT_TIME_SCALE
        return float(real_s / gw["status"]["decision"]["predictedSeconds"])

    ratios = [ratio(waiter), ratio(impatient)]
    mdape = statistics.median(abs(1 - 1 / r) for r in ratios) * 100
    print(
        f"prediction error on the dev cluster: actual/predicted waiter {ratios[0]:.2f}, "
        f"impatient {ratios[1]:.2f} (MdAPE {mdape:.1f}%); long, declared 6x too small, "
        f"{ratio(long):.2f}"
    )
    assert mdape < 25
    after = requests_by_verb()
    assert all(after.get(v, 0) > verbs.get(v, 0) for v in ("filter", "prioritize", "bind"))


def test_sharp_predictions_place_on_the_earliest_finish(api, namespace, pair, seeded):
    """Both nodes free and every speed measured closely: prioritize places by sampled speeds,
    not by the Q-policy, and a close measure leaves nothing to try on the slower node."""
    label, made = pair
    fast = made[0]["metadata"]["name"]
    g.create(api, namespace, manifest("sure", label, WAITER_S, made[0]))
    sure = g.wait_phase(api, namespace, "sure", ("Running", "Succeeded"), timeout_s=60)
    assert sure["status"]["node"] == fast
    decision = sure["status"]["decision"]
    assert decision["reason"].startswith("exploit: earliest predicted finish"), decision
    assert decision["predictedSeconds"] == pytest.approx(WAITER_S, rel=0.2)


BACKOFF_S = 10.0
"""kube-scheduler's longest back-off of an unschedulable pod (podMaxBackoffSeconds)."""
HOLD = {"key": "megagpu.io/e2e-hold", "effect": "NoSchedule"}


def test_a_shorter_job_queued_later_starts_first(api, namespace, pair, seeded):
    """Queue by size: the operator gives a pod the PriorityClass of its predicted size, so when
    the node opens, kube-scheduler takes the shorter of two pods of one priority first.

    The node is held by a taint, not by a running pod: when a pod ends, kube-scheduler may try
    the next one before the extender's ledger has seen the device free, and that retry, not the
    queue order, would decide which goes first.
    """
    label, made = pair
    fast = made[0]["metadata"]["name"]
    core = client.CoreV1Api(api)

    def on_fast(body: dict[str, Any]) -> dict[str, Any]:
        body["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"] = fast
        return body

    core.patch_node(fast, {"spec": {"taints": [HOLD]}})
    g.create(api, namespace, on_fast(manifest("long", label, 3.0, made[0], 2 * 86400.0)))
    g.create(api, namespace, on_fast(manifest("short", label, 3.0, made[0], 30.0)))
    for name, bucket in (("long", 7), ("short", 0)):  # 2 d and 30 s predicted on the H100
        pod = wait_for(lambda name=name: pod_of(api, namespace, name), 30, f"{name}'s pod")
        assert pod.spec.priority_class_name == f"megagpu-normal-q{bucket}"

    def backed_off(name: str) -> bool:
        """Found unschedulable, and since then past any back-off: it queues by priority now."""
        pod = pod_of(api, namespace, name)
        for c in (pod.status.conditions or []) if pod else []:
            if c.type == "PodScheduled" and c.status == "False" and c.last_transition_time:
                age = dt.datetime.now(dt.UTC) - c.last_transition_time
                return age.total_seconds() > BACKOFF_S
        return False

    for name in ("long", "short"):
        wait_for(lambda name=name: backed_off(name), 60, f"{name} unschedulable past back-off")
    core.patch_node(fast, {"spec": {"taints": None}})
    ended = {
        name: g.wait_phase(api, namespace, name, ("Succeeded",), timeout_s=90)
        for name in ("short", "long")
    }
    started = {name: ended[name]["status"]["startedAt"] for name in ended}
    assert started["short"] < started["long"], started


def test_a_pod_pinned_to_the_slower_node_is_queued_by_its_speed_there(api, namespace, pair, seeded):
    """Queue by size reads the pod's node selectors: 30 s predicted on the H100 would be q0, but
    the pod may only run on the T4, 12.8x slower (384 s): q2."""
    label, made = pair
    t4 = made[1]["metadata"]["name"]
    body = manifest("pinned", label, 3.0, made[0], 30.0)
    body["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"] = t4
    g.create(api, namespace, body)
    pod = wait_for(lambda: pod_of(api, namespace, "pinned"), 30, "pinned's pod")
    assert pod.spec.priority_class_name == "megagpu-normal-q2"
