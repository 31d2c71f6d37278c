import pytest

from megagpu.kube import render


def gw(**spec):
    return {
        "metadata": {"name": "llama", "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": {
            "workloadType": "inference",
            "model": "llama3-8b",
            "gpus": 1,
            "backends": ["cuda", "vulkan"],
            "priority": "high",
            "template": {
                "metadata": {"annotations": {"megagpu.io/sim-work": "5"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
            **spec,
        },
    }


def test_pod_carries_label_annotations_affinity_and_owner():
    pod = render.render_pod(gw(), 2)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "llama-a2"
    assert meta["labels"]["megagpu.io/workload"] == "llama"
    assert meta["annotations"]["megagpu.io/backends"] == "cuda,vulkan"
    assert meta["annotations"]["megagpu.io/sim-work"] == "5"
    assert meta["ownerReferences"][0]["uid"] == "u-1"
    assert spec["schedulerName"] == "megagpu-scheduler" and spec["restartPolicy"] == "Never"
    assert spec["priorityClassName"] == "megagpu-high"
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    keys = [t["matchExpressions"][0]["key"] for t in terms["nodeSelectorTerms"]]
    assert keys == ["megagpu.io/backend.cuda", "megagpu.io/backend.vulkan"]
    container = spec["containers"][0]
    assert container["resources"]["limits"] == {"megagpu.io/gpu": "1"}
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env["MEGAGPU_BACKEND"] == "metadata.annotations['megagpu.io/assigned-backend']"


def test_cpu_acceptable_means_no_extended_resource():
    pod = render.render_pod(gw(backends=["cuda", "cpu"]), 1)
    assert "resources" not in pod["spec"]["containers"][0]


def test_vendor_mode_requests_nvidia_gpus_for_cuda_only():
    pod = render.render_pod(gw(backends=["cuda"], gpus=2), 1, resource_mode="vendor")
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}


def test_absent_backends_means_all_but_metal_for_several_gpus():
    body = gw(gpus=2)
    del body["spec"]["backends"]
    assert (
        render.render_pod(body, 1)["metadata"]["annotations"]["megagpu.io/backends"]
        == "cuda,vulkan,cpu"
    )


@pytest.mark.parametrize(
    "template,needle",
    [
        ({"spec": {"containers": [{"name": "c"}], "restartPolicy": "Always"}}, "restartPolicy"),
        ({"spec": {}}, "containers"),
        ({"spec": {"containers": ["nope"]}}, "object"),
    ],
)
def test_bad_templates_say_why(template, needle):
    with pytest.raises(render.TemplateError, match=needle):
        render.render_pod(gw(template=template), 1)


def test_declared_work_reaches_the_pod_and_the_workload():
    from megagpu.core import model
    from megagpu.kube import convert

    pod = render.render_pod(gw(work={"amount": 2.5e6, "unit": "tokens"}), 1)
    assert pod["metadata"]["annotations"]["megagpu.io/work-amount"] == "2500000.0"
    assert convert.workload_from_pod(pod).declared == model.Work(2.5e6, "tokens")
    assert convert.workload_from_pod(render.render_pod(gw(), 1)).declared is None


def required_terms(pod):
    affinity = pod["spec"]["affinity"]["nodeAffinity"]
    return affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


def test_a_users_node_affinity_is_merged_not_replaced():
    zone = {"key": "zone", "operator": "In", "values": ["a"]}
    fast = {"key": "disk", "operator": "In", "values": ["ssd"]}
    host = {"key": "metadata.name", "operator": "In", "values": ["n1"]}
    preferred = [{"weight": 1, "preference": {"matchExpressions": [fast]}}]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [zone]}, {"matchFields": [host]}]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": preferred,
        },
        "podAntiAffinity": {"x": 1},
    }
    template = {
        "spec": {
            "containers": [{"name": "c", "image": "i"}],
            "affinity": affinity,
            "nodeSelector": {"pool": "gpu"},
        }
    }
    pod = render.render_pod(gw(template=template), 1)

    def backend(b):
        return {"key": f"megagpu.io/backend.{b}", "operator": "In", "values": ["true"]}

    # (zone OR host) AND (cuda OR vulkan): every user term once per backend
    assert required_terms(pod) == [
        {"matchExpressions": [zone, backend("cuda")]},
        {"matchExpressions": [zone, backend("vulkan")]},
        {"matchFields": [host], "matchExpressions": [backend("cuda")]},
        {"matchFields": [host], "matchExpressions": [backend("vulkan")]},
    ]
    node = pod["spec"]["affinity"]["nodeAffinity"]
    assert node["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert pod["spec"]["affinity"]["podAntiAffinity"] == {"x": 1}
    assert pod["spec"]["nodeSelector"] == {"pool": "gpu"}
    # the template itself is left as it was
    assert affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ] == [{"matchExpressions": [zone]}, {"matchFields": [host]}]


def test_a_template_without_required_terms_gets_one_per_backend():
    template = {"spec": {"containers": [{"name": "c"}], "affinity": {"nodeAffinity": {}}}}
    terms = required_terms(render.render_pod(gw(template=template), 1))
    assert [t["matchExpressions"][0]["key"] for t in terms] == [
        "megagpu.io/backend.cuda",
        "megagpu.io/backend.vulkan",
    ]


def limits(container):
    return (container.get("resources") or {}).get("limits") or {}


def test_only_the_named_container_gets_the_devices():
    template = {
        "spec": {
            "initContainers": [{"name": "fetch", "image": "i"}],
            "containers": [
                {"name": "proxy", "image": "envoy", "resources": {"limits": {"cpu": "1"}}},
                {"name": "model", "image": "vllm"},
                {"name": "logs", "image": "fluentbit"},
            ],
        }
    }
    pod = render.render_pod(gw(template=template, gpus=2, gpuContainer="model"), 1)
    spec = pod["spec"]
    by_name = {c["name"]: c for c in spec["containers"]}
    assert [c["name"] for c in spec["containers"]] == ["proxy", "model", "logs"]
    assert limits(by_name["model"]) == {"megagpu.io/gpu": "2"}
    assert limits(by_name["proxy"]) == {"cpu": "1"}
    assert limits(by_name["logs"]) == {}
    assert spec["initContainers"] == [{"name": "fetch", "image": "i"}]


def test_without_a_name_the_first_container_gets_the_devices():
    template = {"spec": {"containers": [{"name": "main"}, {"name": "sidecar"}]}}
    first, sidecar = render.render_pod(gw(template=template), 1)["spec"]["containers"]
    assert limits(first) == {"megagpu.io/gpu": "1"} and limits(sidecar) == {}


def test_a_gpu_container_that_does_not_exist_says_which_exist():
    template = {"spec": {"containers": [{"name": "main"}, {"name": "sidecar"}]}}
    with pytest.raises(render.TemplateError, match=r"'model'.*\(main, sidecar\)"):
        render.render_pod(gw(template=template, gpuContainer="model"), 1)


@pytest.mark.parametrize(
    "affinity",
    [
        ["not", "an", "object"],
        {"nodeAffinity": "x"},
        {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": "x"}},
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": {}}
            }
        },
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [1]}
            }
        },
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": {"key": "a"}}]
                }
            }
        },
    ],
)
def test_a_malformed_affinity_is_an_invalid_template_not_dropped(affinity):
    template = {"spec": {"containers": [{"name": "c"}], "affinity": affinity}}
    with pytest.raises(render.TemplateError, match="affinity"):
        render.render_pod(gw(template=template), 1)


def test_a_deadline_out_of_range_is_an_invalid_template_not_a_crash():
    body = gw(deadlineSeconds=300_000_000_000)
    body["metadata"]["creationTimestamp"] = "2026-12-06T00:00:00Z"
    with pytest.raises(render.TemplateError, match="deadlineSeconds"):
        render.render_pod(body, 1)
