"""`helm install --wait`, `helm test`, upgrade and uninstall with hooks, on a real node."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from megagpu.devcluster import binaries, nodeconfig
from tests.e2e.conftest import ROOT, kubectl
from tests.e2e.gw import GROUP, PLURAL, VERSION, policy_status
from tests.release import ha

NS = "megagpu-system"
RELEASE = "megagpu"


def helm(kubeconfig: Path, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries.binary("helm")), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=ROOT,
    )


def values(node: Any) -> list[str]:
    """The chart on the dev cluster: the local image, only the real node, its simulated GPUs."""
    label = nodeconfig.LABEL.replace(".", "\\.")
    return [
        "--set", "image.repository=localhost/megagpu",
        "--set", "image.tag=dev",
        "--set", "image.pullPolicy=Never",
        "--set", "priorityClasses.create=false",  # megagpu dev up made them and the policy
        "--set", "policy.create=false",
        "--set-string", f"nodeSelector.{label}=true",
        "--set", f"tolerations[0].key={nodeconfig.TAINT}",
        "--set", "tolerations[0].operator=Exists",
        "--set-string", f"probe.nodeSelector.{label}=true",
        "--set", f"probe.devicePlugin.kubeletDir={node.kubelet_dir}",
        "--set", f"probe.devicePlugin.simulatedDevices={node.gpus}",
        "--set", "probe.interval=5",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def release(bare_cluster) -> Iterator[tuple[Path, Any, client.ApiClient]]:
    kubeconfig, node = bare_cluster
    start = time.monotonic()
    done = helm(
        kubeconfig,
        "install", RELEASE, "charts/megagpu", "-n", NS, "--create-namespace",
        *values(node), "--wait", "--timeout", "8m",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr + describe(kubeconfig)
    print(f"helm install --wait took {time.monotonic() - start:.0f}s")
    api = config.new_client_from_config(str(kubeconfig))
    yield kubeconfig, node, api
    helm(kubeconfig, "uninstall", RELEASE, "-n", NS, "--wait")


def describe(kubeconfig: Path) -> str:
    return kubectl(kubeconfig, "get", "pods", "-A", "-o", "wide").stdout


def release_pods(core: client.CoreV1Api) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(NS, label_selector="app.kubernetes.io/instance=" + RELEASE)
    return [
        p for p in pods.items if p.status.phase != "Succeeded" and not p.metadata.deletion_timestamp
    ]


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def test_every_release_pod_runs_ready_on_the_real_node(release):
    _, node, api = release
    pods = release_pods(client.CoreV1Api(api))
    components = sorted(p.metadata.labels.get("app.kubernetes.io/component", "") for p in pods)
    assert components == ["operator", "operator", "probe", "scheduler"], components
    for pod in pods:
        assert pod.spec.node_name == node.name, pod.metadata.name
    core = client.CoreV1Api(api)

    def all_ready() -> bool:
        return all(
            p.status.phase == "Running" and all(s.ready for s in p.status.container_statuses)
            for p in release_pods(core)
        )

    wait_for(all_ready, 120, "every release pod Running and ready")


def test_helm_test_passes(release):
    kubeconfig, _, _ = release
    done = helm(kubeconfig, "test", RELEASE, "-n", NS, "--timeout", "3m")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(rf"TEST SUITE:\s+{RELEASE}-test", done.stdout), done.stdout
    assert re.search(r"Phase:\s+Succeeded", done.stdout), done.stdout


def test_the_probe_pod_publishes_its_node_and_serves_its_devices(release):
    _, node, api = release
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)

    def published() -> dict[str, Any] | None:
        gpunode = custom.get_cluster_custom_object(GROUP, VERSION, "gpunodes", node.name)
        return gpunode if (gpunode.get("status") or {}).get("lastProbeTime") else None

    gpunode = wait_for(published, 60, "the probe pod's GpuNode")
    assert gpunode["status"]["backends"]["cuda"]["available"]
    # benchmarks are on by default: the node's CPU is measured; simulated devices never are
    measured = gpunode["status"]["backends"]["cpu"]["benchmarks"]
    assert measured["fp32Tflops"] > 0 and measured["measuredAt"]
    assert "benchmarks" not in gpunode["status"]["backends"]["cuda"]
    allocatable = wait_for(
        lambda: core.read_node(node.name).status.allocatable.get("megagpu.io/gpu"),
        60,
        "megagpu.io/gpu in the node's allocatable",
    )
    assert allocatable == str(node.gpus)


def bench_workload(name: str, node: Any) -> dict[str, Any]:
    return ha.workload(name, node, ["python", "-c", EXEC_REPORT])


EXEC_REPORT = (
    "import json, os\n"
    "open('/dev/termination-log', 'w').write(json.dumps({'megagpu.io/work': 20,"
    " 'devices': sorted(os.listdir('/dev/megagpu-sim'))}))\n"
)


def complete(api: client.ApiClient, ns: str, name: str, node: Any) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, bench_workload(name, node))

    def finished() -> dict[str, Any] | None:
        gw = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        phase = (gw.get("status") or {}).get("phase")
        return gw if phase in ("Succeeded", "Failed") else None

    gw = wait_for(finished, 180, f"{name} to finish")
    assert gw["status"]["phase"] == "Succeeded", gw["status"]
    return gw


def extender_requests(api: client.ApiClient) -> dict[str, float]:
    """megagpu_extender_requests_total by verb, read from the scheduler pod's sidecar."""
    core = client.CoreV1Api(api)
    selector = "app.kubernetes.io/component=scheduler"
    (pod,) = core.list_namespaced_pod(NS, label_selector=selector).items
    with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8889/metrics", timeout=5) as r:
        text = r.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("megagpu_extender_requests_total{"):
            verb = line.split('verb="')[1].split('"')[0]
            counts[verb] = counts.get(verb, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def test_the_sidecar_extender_places_a_workload_that_runs_on_the_real_node(release):
    kubeconfig, node, api = release
    before = extender_requests(api)
    kubectl(kubeconfig, "create", "namespace", "release-work")
    gw = complete(api, "release-work", "bench-1", node)
    assert gw["status"]["node"] == node.name
    assert gw["status"]["decision"]["mode"] in ("exploit", "explore", "forced")
    after = extender_requests(api)
    for verb in ("filter", "bind"):
        assert after.get(verb, 0) > before.get(verb, 0), (verb, before, after)


def lease_holder(api: client.ApiClient) -> str:
    lease = client.CoordinationV1Api(api).read_namespaced_lease("megagpu-operator", NS)
    return str(lease.spec.holder_identity)


def operator_pods(core: client.CoreV1Api) -> set[str]:
    return {p.metadata.name for p in release_pods(core) if "operator" in p.metadata.name}


def test_100_workloads_complete_exactly_once_across_two_leader_kills(release):
    """The leader is killed (its pod deleted at once) twice while 100 workloads run."""
    kubeconfig, node, api = release
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = "release-ha"
    kubectl(kubeconfig, "create", "namespace", ns)
    before = policy_status(api).get("updates", 0)
    names = [f"ha-{i:03d}" for i in range(100)]
    for name in names:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, ha.quick_workload(name, node)
        )

    def phases() -> Counter:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        return Counter((w.get("status") or {}).get("phase", "Pending") for w in items)

    for done in (30, 65):  # kill the leader once 30, then 65, have succeeded
        wait_for(lambda done=done: phases()["Succeeded"] >= done, 300, f"{done} succeeded")
        holder = lease_holder(api)
        assert holder in operator_pods(core)
        core.delete_namespaced_pod(holder, NS, grace_period_seconds=0)
        wait_for(
            lambda holder=holder: lease_holder(api) in operator_pods(core) - {holder},
            90,
            f"a standby to take the lease from {holder}",
        )
    wait_for(lambda: phases()["Succeeded"] + phases()["Failed"] == 100, 600, "all 100 ended")
    items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
    assert {w["status"]["phase"] for w in items} == {"Succeeded"}, phases()
    assert {w["status"]["attempts"] for w in items} == {1}
    pods = Counter(p.metadata.labels.get("megagpu.io/workload") for p in
                   core.list_namespaced_pod(ns).items)  # fmt: skip
    assert pods == Counter(names)  # one pod per workload, never a second
    # each outcome learned once: exactly 100 updates, through both kills
    wait_for(lambda: policy_status(api)["updates"] - before >= 100, 60, "100 learning updates")
    assert policy_status(api)["updates"] - before == 100


def test_no_release_pod_restarted_and_the_standby_stays_up_ten_minutes(release):
    _, _, api = release
    core = client.CoreV1Api(api)
    holder = lease_holder(api)
    standbys = [p for p in release_pods(core) if "operator" in p.metadata.name
                and p.metadata.name != holder]  # fmt: skip
    assert len(standbys) == 1
    name = standbys[0].metadata.name
    started = standbys[0].status.start_time
    wait_for(
        lambda: time.time() - started.timestamp() >= 600,
        630,
        f"{name} to have run 10 minutes",
    )
    for pod in release_pods(core):
        restarts = [s.restart_count for s in pod.status.container_statuses]
        assert restarts == [0] * len(restarts), (pod.metadata.name, restarts)
    assert lease_holder(api) == holder  # the standby never took the lease from a live leader


def test_a_leader_whose_renewals_fail_steps_down_and_the_standby_takes_over(release):
    """The leader's pod loses the API server: it steps down; the standby leads; work goes on."""
    kubeconfig, node, api = release
    core = client.CoreV1Api(api)
    holder = lease_holder(api)
    (standby,) = operator_pods(core) - {holder}
    service_ip = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    with ha.api_cut_off(ha.sandbox_pid(node, holder, NS), service_ip):
        wait_for(lambda: lease_holder(api) == standby, 90, f"{standby} to take the lease")

        def restarted() -> bool:  # stepping down ends the process; the kubelet starts it again
            pod = core.read_namespaced_pod(holder, NS)
            return any(s.restart_count >= 1 for s in pod.status.container_statuses or [])

        wait_for(restarted, 60, f"{holder} to step down")
    previous = kubectl(kubeconfig, "logs", holder, "-n", NS, "--previous").stdout
    assert "stepping down" in previous, previous[-2000:]
    kubectl(kubeconfig, "create", "namespace", "release-ha")  # fails harmlessly when it exists
    gw = complete(api, "release-ha", "after-step-down", node)
    assert gw["status"]["node"] == node.name
    assert lease_holder(api) == standby


def test_a_real_prometheus_scrapes_the_release_pods(release, tmp_path):
    """Prometheus (Debian's, as make test unpacks it) scrapes each component's pod by its IP."""
    from tests.e2e.test_prometheus import query, serving

    _, _, api = release
    ports = {"probe": 9400, "scheduler": 8889, "operator": 8080}
    targets: dict[str, list[str]] = {}
    for pod in release_pods(client.CoreV1Api(api)):
        component = pod.metadata.labels.get("app.kubernetes.io/component", "")
        if component in ports:
            targets.setdefault(component, []).append(f"{pod.status.pod_ip}:{ports[component]}")
    with serving(targets, tmp_path) as port:
        for job in ("probe", "scheduler", "operator"):
            wait_for(lambda job=job: query(port, f'up{{job="{job}"}} == 1'), 60, f"{job} up")
        wait_for(lambda: query(port, "megagpu_extender_requests_total"), 30, "extender series")
        wait_for(lambda: query(port, "megagpu_node_gpus"), 30, "the probe's node series")


def test_upgrade_and_uninstall_run_their_hooks_and_leave_nothing(release):
    kubeconfig, node, api = release
    done = helm(
        kubeconfig, "upgrade", RELEASE, "charts/megagpu", "-n", NS, *values(node),
        "--wait", "--timeout", "5m",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    events = kubectl(kubeconfig, "get", "events", "-n", NS, "-o", "json").stdout
    jobs = {e["involvedObject"]["name"] for e in json.loads(events)["items"]
            if e["involvedObject"]["kind"] == "Job" and e["reason"] == "Completed"}  # fmt: skip
    assert any("crd" in j for j in jobs), jobs
    done = helm(kubeconfig, "uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "5m")
    assert done.returncode == 0, done.stdout + done.stderr
    events = kubectl(kubeconfig, "get", "events", "-n", NS, "-o", "json").stdout
    jobs = {e["involvedObject"]["name"] for e in json.loads(events)["items"]
            if e["involvedObject"]["kind"] == "Job" and e["reason"] == "Completed"}  # fmt: skip
    assert any("uninstall" in j for j in jobs), jobs
    selector = f"app.kubernetes.io/instance={RELEASE}"
    kinds = "all,cm,sa,role,rolebinding,clusterrole,clusterrolebinding,lease"

    def left() -> list[str]:
        found = kubectl(kubeconfig, "get", kinds, "-A", "-l", selector, "-o", "name")
        return found.stdout.split() if found.returncode == 0 else [found.stderr]

    deadline = time.monotonic() + 120
    while left() and time.monotonic() < deadline:
        time.sleep(1)
    assert left() == []
