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
