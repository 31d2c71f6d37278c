"""Which container of a rendered pod asks for devices, and for which resource."""

import pytest

from megagpu.kube import convert, render
from tests.kube.test_render import gw


def _two_containers(**spec):
    workload = gw(**spec)
    workload["spec"]["template"]["spec"]["containers"].append({"name": "logs", "image": "i"})
    workload["spec"]["template"]["spec"]["initContainers"] = [{"name": "fetch", "image": "i"}]
    return workload


@pytest.mark.parametrize(
    ("mode", "backends", "resource"),
    [
        ("megagpu", ["cuda", "vulkan"], "megagpu.io/gpu"),
        ("vendor", ["cuda"], "nvidia.com/gpu"),
        ("vendor", ["cuda", "vulkan"], "megagpu.io/gpu"),
    ],
)
def test_only_the_first_container_asks_for_the_devices(mode, backends, resource):
    pod = render.render_pod(_two_containers(gpus=2, backends=backends), 1, resource_mode=mode)
    main, logs = pod["spec"]["containers"]
    assert main["resources"]["limits"] == {resource: "2"}
    assert "resources" not in logs
    assert "resources" not in pod["spec"]["initContainers"][0]
    # every container still reads its pod's assignment
    assert {e["name"] for e in logs["env"]} >= {"MEGAGPU_BACKEND", "MEGAGPU_DEVICES"}


def _node(**allocatable):
    return {
        "metadata": {"name": "n", "labels": {"megagpu.io/backend.cuda": "true"}},
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_the_extender_counts_nvidia_gpus_beside_megagpu_ones():
    assert convert.node_from_k8s(_node(**{"nvidia.com/gpu": "4"})).devices == 4
    assert convert.node_from_k8s(_node(**{"megagpu.io/gpu": "2"})).devices == 2
    # one GPU advertised by both plugins is still one GPU
    both = _node(**{"nvidia.com/gpu": "4", "megagpu.io/gpu": "4"})
    assert convert.node_from_k8s(both).devices == 4
    assert convert.node_from_k8s(_node(**{"nvidia.com/gpu": "x"})).devices == 0
