"""Real nodes of the dev cluster: a kubelet with containerd running real containers."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from megagpu.devcluster import cluster, nodeconfig, processes, realnodes
from tests.e2e.conftest import kubectl

IMAGE = "localhost/megagpu:dev"


def real_pod(name: str, node: str, command: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "tolerations": [{"key": nodeconfig.TAINT, "operator": "Exists"}],
            "containers": [
                {"name": "c", "image": IMAGE, "imagePullPolicy": "Never", "command": command}
            ],
        },
    }


def wait_pod(core: client.CoreV1Api, ns: str, name: str, phases: set[str], timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while True:
        pod = core.read_namespaced_pod(name, ns)
        if pod.status.phase in phases:
            return pod
        assert time.monotonic() < deadline, f"{name}: {pod.status.phase}, {pod.status}"
        time.sleep(0.5)


def python(code: str) -> list[str]:
    return ["python", "-c", code]


def test_real_node_is_ready_with_the_pinned_kubelet_and_containerd(kubeconfig, real_node):
    done = kubectl(kubeconfig, "get", "nodes", "-o", "json")
    nodes = {n["metadata"]["name"]: n for n in json.loads(done.stdout)["items"]}
    info = nodes[real_node]["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.36.3"
    assert info["containerRuntimeVersion"].startswith("containerd://2.")
    ready = [c for c in nodes[real_node]["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    fake = [
        n
        for n, o in nodes.items()
        if o["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node") == "fake"
    ]
    assert fake, "fake nodes sit beside the real one"
    wide = kubectl(kubeconfig, "get", "nodes", "-o", "wide").stdout
    assert "containerd://" in wide and real_node in wide


def test_a_pod_runs_the_project_image_and_its_termination_message_comes_back(
    api, namespace, real_node
):
    core = client.CoreV1Api(api)
    code = (
        "import json; open('/dev/termination-log', 'w').write(json.dumps("
        "{'megagpu.io/work': 7, 'unit': 'steps'}))"
    )
    core.create_namespaced_pod(namespace, real_pod("hello", real_node, python(code)))
    pod = wait_pod(core, namespace, "hello", {"Succeeded", "Failed"})
    state = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Succeeded", state
    assert state.container_id.startswith("containerd://")
    assert json.loads(state.message) == {"megagpu.io/work": 7, "unit": "steps"}
    assert pod.status.pod_ip and pod.status.pod_ip.startswith("10.244.")


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(api, namespace, real_node):
    core = client.CoreV1Api(api)
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    code = (
        "import os, ssl, urllib.request\n"
        f"ctx = ssl.create_default_context(cafile='{sa}/ca.crt')\n"
        f"token = open('{sa}/token').read()\n"
        "url = 'https://' + os.environ['KUBERNETES_SERVICE_HOST'] + '/version'\n"
        "req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + token})\n"
        "body = urllib.request.urlopen(req, context=ctx, timeout=10).read().decode()\n"
        "open('/dev/termination-log', 'w').write(os.environ['KUBERNETES_SERVICE_HOST'] + ' '"
        " + body[:400])\n"
    )
    core.create_namespaced_pod(namespace, real_pod("api", real_node, python(code)))
    pod = wait_pod(core, namespace, "api", {"Succeeded", "Failed"})
    message = pod.status.container_statuses[0].state.terminated.message
    assert pod.status.phase == "Succeeded", message
    host, body = message.split(" ", 1)
    assert host == nodeconfig.KUBERNETES_SERVICE_IP
    assert '"gitVersion": "v1.36.3"' in body


def test_kwok_does_not_fake_pods_on_the_real_node(api, namespace, real_node):
    """A pod whose image is absent stays Pending on the real node (kwok would say Running)."""
    core = client.CoreV1Api(api)
    pod = real_pod("absent", real_node, ["true"])
    pod["spec"]["containers"][0]["image"] = "localhost/absent:never"
    core.create_namespaced_pod(namespace, pod)
    deadline = time.monotonic() + 60
    while True:
        status = core.read_namespaced_pod("absent", namespace).status
        waiting = [s.state.waiting for s in status.container_statuses or [] if s.state.waiting]
        if waiting and waiting[0].reason == "ErrImageNeverPull":
            break
        assert status.phase == "Pending", status
        assert time.monotonic() < deadline, status
        time.sleep(0.5)


def test_running_pods_survive_a_kubelet_restart(api, namespace, real_node):
    core = client.CoreV1Api(api)
    code = "import time; time.sleep(600)"
    core.create_namespaced_pod(namespace, real_pod("long", real_node, python(code)))
    before = wait_pod(core, namespace, "long", {"Running"})
    container = before.status.container_statuses[0].container_id
    p = cluster.paths()
    name = f"kubelet-{real_node}"
    pid = processes.pids(p.pids)[name]
    os.kill(pid, signal.SIGKILL)
    while processes.alive(pid):
        time.sleep(0.1)
    (node,) = [n for n in realnodes.recorded(p.pids) if n.name == real_node]
    processes.restart(name, p.logs, p.pids)
    realnodes.wait_ready(node, Path(p.kubeconfig), p.logs, p.pids)
    # Ready again, the pod's container is the same one and was never restarted.
    after = core.read_namespaced_pod("long", namespace)
    status = after.status.container_statuses[0]
    assert after.status.phase == "Running"
    assert status.container_id == container and status.restart_count == 0
    core.create_namespaced_pod(namespace, real_pod("after", real_node, ["true"]))
    assert wait_pod(core, namespace, "after", {"Succeeded", "Failed"}).status.phase == "Succeeded"
