"""The operator on the dev cluster with the real kube-scheduler, extender and runtime."""

from __future__ import annotations

import json
import os
import signal
import time

from kubernetes import client

from megagpu.devcluster import cluster, processes
from tests.e2e import gw as g
from tests.e2e.conftest import megagpu, restart_apiserver
from tests.e2e.test_scheduler_extender import wait_for

COUNT = 40


def test_mixed_workloads_succeed_and_each_outcome_is_learned_once(api, namespace):
    """40 workloads through an operator kill -9 and a kube-apiserver restart."""
    before = g.policy_status(api).get("updates", 0)
    for i in range(COUNT):
        kind, model, gpus, backends = g.MIX[i % len(g.MIX)]
        g.create(api, namespace, g.manifest(f"w{i:02d}", kind, model, gpus, backends))
        if i == COUNT // 2:  # an operator crash in the middle of the run
            pid = processes.pids(cluster.paths().pids)["operator"]
            os.kill(pid, signal.SIGKILL)
            assert megagpu("dev", "up").returncode == 0  # restarts the dead operator
        if i == 3 * COUNT // 4:  # and a kube-apiserver restart
            restart_apiserver()
    for i in range(COUNT):
        found = g.wait_phase(api, namespace, f"w{i:02d}", ("Succeeded", "Failed"), 180)
        status = found["status"]
        assert status["phase"] == "Succeeded", status
        assert status["decision"]["mode"] in ("exploit", "explore", "forced", "overridden")
        assert isinstance(status["reward"], float | int) and status["durationSeconds"] > 0
        assert status["attempts"] == 1 and status["observedGeneration"] == 1
        assert g.condition(found, "Completed")["status"] == "True"
    assert g.policy_status(api)["updates"] - before == COUNT
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    assert len(pods) == COUNT  # never two pods for one workload


def test_workload_that_can_never_fit_is_unschedulable(api, namespace):
    g.create(
        api,
        namespace,
        g.manifest("huge", "training", "resnet-50-bs64", 1, ["cuda"], memoryMiB=900000),
    )
    found = wait_for(
        lambda: (
            lambda s: (
                s
                if any(
                    c["type"] == "Unschedulable" and c["status"] == "True"
                    for c in s.get("conditions", [])
                )
                else None
            )
        )(g.get(api, namespace, "huge").get("status") or {}),
        timeout_s=60,
        what="Unschedulable=True",
    )
    assert found["phase"] == "Scheduling"
    message = next(c for c in found["conditions"] if c["type"] == "Unschedulable")["message"]
    assert "MiB per device" in message or "Insufficient" in message or "memory" in message


def test_failing_container_ends_failed_after_retries(api, namespace):
    g.create(
        api,
        namespace,
        g.manifest(
            "crash",
            "inference",
            "llama3-8b-q4",
            1,
            ["cuda"],
            maxRetries=1,
            annotations={
                "megagpu.io/sim-exit-code": "3",
                "megagpu.io/sim-fail-reason": "OOMKilled",
            },
        ),
    )
    found = g.wait_phase(api, namespace, "crash", ("Failed",), 120)
    assert found["status"]["attempts"] == 2
    assert g.condition(found, "Failed")["reason"] == "OOMKilled"


def test_stuck_pending_times_out(api, namespace):
    g.create(
        api,
        namespace,
        g.manifest(
            "stuck",
            "inference",
            "llama3-8b-q4",
            1,
            ["cuda"],
            maxRetries=0,
            startTimeoutSeconds=3,
            annotations={"megagpu.io/sim-stuck-pending": "true"},
        ),
    )
    found = g.wait_phase(api, namespace, "stuck", ("Failed",), 60)
    assert g.condition(found, "Failed")["reason"] == "StartTimeout"


def test_invalid_template_is_not_accepted(api, namespace):
    body = g.manifest("bad-template", "inference", "m", 1, ["cuda"])
    body["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    g.create(api, namespace, body)
    found = g.wait_phase(api, namespace, "bad-template", ("Failed",), 30)
    accepted = g.condition(found, "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidTemplate")


def test_tampered_q_state_falls_back_and_is_repaired(api, namespace):
    core = client.CoreV1Api(api)
    state = core.read_namespaced_config_map("megagpu-policy-state", "megagpu-system")
    doc = json.loads(state.data["state.json"])
    doc["q"]["reward_ema"] = 99.0
    core.patch_namespaced_config_map(
        "megagpu-policy-state", "megagpu-system", {"data": {"state.json": json.dumps(doc)}}
    )
    g.create(api, namespace, g.manifest("after-tamper", "inference", "llama3-8b-q4", 1, ["cuda"]))
    g.wait_phase(api, namespace, "after-tamper", ("Succeeded",), 90)
    events = core.list_namespaced_event(namespace).items
    assert any(e.reason == "QStateRejected" for e in events)
    repaired = core.read_namespaced_config_map("megagpu-policy-state", "megagpu-system")
    from megagpu.core import qstate

    assert qstate.loads(repaired.data["state.json"]).version >= 1


def test_policy_tools_and_explain(api, namespace, kubeconfig, tmp_path):
    g.create(api, namespace, g.manifest("explained", "inference", "llama3-8b-q4", 1, ["cuda"]))
    g.wait_phase(api, namespace, "explained", ("Succeeded",), 90)
    k = ["--kubeconfig", str(kubeconfig)]
    shown = megagpu("policy", "show", *k)
    assert shown.returncode == 0 and "version" in shown.stdout
    before = int(shown.stdout.split()[1])
    exported = tmp_path / "state.json"
    assert megagpu("policy", "export", "-o", str(exported), *k).returncode == 0
    imported = megagpu("policy", "import", str(exported), *k)
    assert imported.returncode == 0 and int(imported.stdout.split()[-1]) > before
    tampered = tmp_path / "bad.json"
    tampered.write_text(exported.read_text().replace('"updates"', '"updatez"', 1))
    bad = megagpu("policy", "import", str(tampered), *k)
    assert bad.returncode == 1 and "not imported" in bad.stderr and "Traceback" not in bad.stderr
    rolled = megagpu("policy", "rollback", *k)
    assert rolled.returncode == 0, rolled.stderr
    assert megagpu("policy", "reset", *k).returncode == 0
    after = int(megagpu("policy", "show", *k).stdout.split()[1])
    assert after > before  # versions only grow, whatever is installed
    status = g.policy_status(api)  # the reset shows in the policy's status at once
    assert status["version"] == after and status["updates"] == 0
    why = megagpu("explain", "explained", "-n", namespace, *k)
    assert why.returncode == 0 and "placed on" in why.stdout and "reward" in why.stdout
    missing = megagpu("explain", "nope", "-n", namespace, *k)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_shadow_mode_places_by_the_baseline_and_reports_the_learned_choice(api, namespace):
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)

    def set_mode(mode):
        custom.patch_cluster_custom_object(
            "megagpu.io", "v1alpha1", "gpuschedulingpolicies", "default", {"spec": {"mode": mode}}
        )

        def stored():
            cm = core.read_namespaced_config_map("megagpu-policy-state", "megagpu-system")
            return json.loads(cm.data["state.json"])["params"]["mode"] == mode

        wait_for(stored, timeout_s=30, what=f"the Q-state to hold mode {mode}")

    try:
        set_mode("shadow")
        g.create(
            api,
            namespace,
            g.manifest("shadowed", "inference", "llama3-8b-q4", 1, ["cuda", "vulkan", "metal"]),
        )
        found = g.wait_phase(api, namespace, "shadowed", ("Succeeded",), 90)
        assert found["status"]["decision"]["reason"].startswith("shadow: least_allocated")
        assert "the learned policy would choose" in found["status"]["decision"]["reason"]
    finally:
        set_mode("active")


def test_operator_metrics_count_phases_and_learning(api, namespace):
    import urllib.request

    g.create(api, namespace, g.manifest("metered", "inference", "llama3-8b-q4", 1, ["cuda"]))
    g.wait_phase(api, namespace, "metered", ("Succeeded",), 90)
    with urllib.request.urlopen("http://127.0.0.1:8080/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'megagpu_operator_workloads{phase="Succeeded"}' in text
    assert "megagpu_operator_learning_updates_total" in text
    assert "megagpu_operator_reconcile_seconds_count" in text


def test_deleting_a_running_workload_removes_its_pod_without_learning(api, namespace):
    g.create(
        api,
        namespace,
        g.manifest(
            "gone",
            "training",
            "resnet-50-bs64",
            1,
            ["cuda"],
            annotations={"megagpu.io/sim-work": "1000000000"},
        ),
    )
    found = g.wait_phase(api, namespace, "gone", ("Running",), 90)
    finalizers = found["metadata"].get("finalizers") or []
    assert any(f.startswith("kopf.zalando.org/") for f in finalizers), finalizers
    before = g.policy_status(api)["updates"]
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    custom.delete_namespaced_custom_object(g.GROUP, g.VERSION, namespace, g.PLURAL, "gone")

    def removed() -> bool:
        try:
            g.get(api, namespace, "gone")
        except client.exceptions.ApiException as e:
            return e.status == 404
        return False

    wait_for(removed, 30, "the workload to be removed through its finalizer")
    pods = core.list_namespaced_pod(namespace, label_selector="megagpu.io/workload=gone").items
    assert all(p.metadata.deletion_timestamp for p in pods), "a pod outlived its workload"
    time.sleep(3)
    assert g.policy_status(api)["updates"] == before  # a removed pod is not an outcome


def test_gpunodes_of_nodes_that_are_gone_are_removed(api):
    """The GpuNode of a deleted Node goes; so does one created for a Node that never was."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    gone, never = f"e2e-gone-{os.getpid()}", f"e2e-never-{os.getpid()}"
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=gone)))
    for name in (gone, never):
        custom.create_cluster_custom_object(
            "megagpu.io",
            "v1alpha1",
            "gpunodes",
            {"apiVersion": "megagpu.io/v1alpha1", "kind": "GpuNode", "metadata": {"name": name}},
        )

    def exists(name: str) -> bool:
        try:
            custom.get_cluster_custom_object("megagpu.io", "v1alpha1", "gpunodes", name)
            return True
        except client.exceptions.ApiException as e:
            assert e.status == 404
            return False

    wait_for(lambda: not exists(never) or None, 30, "the GpuNode without a Node removed")
    assert exists(gone)  # its Node is there: kept
    core.delete_node(gone)
    wait_for(lambda: not exists(gone) or None, 30, "the GpuNode of the deleted Node removed")
