"""A user's pod template on a real node (issue 19): the user's required node affinity and a
sidecar survive rendering, and only the container named by spec.gpuContainer gets a device."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from megagpu.devcluster import nodeconfig
from tests.e2e import gw as g
from tests.e2e.test_real_devices import REPORT, finished_pods

IMAGE = "localhost/megagpu:dev"


def container(name: str) -> dict[str, Any]:
    command = ["python", "-c", REPORT.format(seconds=1)]
    return {"name": name, "image": IMAGE, "imagePullPolicy": "Never", "command": command}


def test_a_users_affinity_and_sidecar_survive_and_only_the_named_container_gets_a_device(
    api, namespace, real_node
):
    here = {"key": "kubernetes.io/hostname", "operator": "In", "values": [real_node]}
    nowhere = {"key": "megagpu.io/e2e-no-such-label", "operator": "Exists"}
    preferred = [{"weight": 10, "preference": {"matchExpressions": [here]}}]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [here]}, {"matchExpressions": [nowhere]}]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": preferred,
        }
    }
    body = g.manifest("templated", "inference", "device-check", 1, ["cuda"], gpuContainer="work")
    body["spec"]["template"]["spec"] = {
        "affinity": affinity,
        "tolerations": [{"key": nodeconfig.TAINT, "operator": "Exists"}],
        "initContainers": [container("init")],
        "containers": [container("proxy"), container("work")],
    }
    g.create(api, namespace, body)
    core = client.CoreV1Api(api)
    pod = finished_pods(core, namespace, ["templated"], 180)["templated"]
    assert pod.status.phase == "Succeeded", pod.status
    assert pod.spec.node_name == real_node

    raw = json.loads(
        core.read_namespaced_pod(pod.metadata.name, namespace, _preload_content=False).data
    )
    spec = raw["spec"]
    node_affinity = spec["affinity"]["nodeAffinity"]
    cuda = {"key": "megagpu.io/backend.cuda", "operator": "In", "values": ["true"]}
    terms = node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [here, cuda]}, {"matchExpressions": [nowhere, cuda]}]
    assert node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] == preferred

    limits = {
        c["name"]: (c.get("resources") or {}).get("limits", {})
        for c in spec["initContainers"] + spec["containers"]
    }
    assert limits == {"init": {}, "proxy": {}, "work": {"megagpu.io/gpu": "1"}}, limits
    reports = {
        s["name"]: json.loads(s["state"]["terminated"]["message"])
        for s in raw["status"]["containerStatuses"]
    }
    assert len(reports["work"]["seen"]) == 1, reports["work"]
    assert reports["proxy"]["seen"] == [], reports["proxy"]
    assert (
        g.wait_phase(api, namespace, "templated", ("Succeeded", "Failed"), 60)["status"]["phase"]
        == "Succeeded"
    )
    print(f"\nwork saw {reports['work']['seen']}, the sidecar {reports['proxy']['seen']}")
