import pytest

from megagpu.devcluster import runtime
from megagpu.io import devices
from megagpu.kube import convert
from tests.helpers import node

TABLES = runtime.load_tables()


def k8s_node(n):
    return convert.fake_node(n) | {
        "status": {
            **convert.fake_node(n)["status"],
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }


def pod(model_name, backend, gpus=1, work=None, kind="inference"):
    annotations = {
        "megagpu.io/model": model_name,
        "megagpu.io/gpus": str(gpus),
        "megagpu.io/backends": "cuda,vulkan,metal",
        "megagpu.io/workload-type": kind,
        "megagpu.io/assigned-backend": backend,
    }
    if work:
        annotations["megagpu.io/sim-work"] = work
    return {"metadata": {"uid": "u", "annotations": annotations}}


SPEC = devices.DEVICES["h100"]
H100 = k8s_node(
    node(
        "h100-0",
        "h100",
        devices=8,
        fp16=SPEC.fp16_tflops,
        gbps=SPEC.mem_gbps,
        backends=("cuda", "vulkan"),
        fp32=SPEC.fp32_tflops,
    )
)


def test_exact_row_gives_the_duration():
    assert runtime.run_seconds(
        pod("llama3-8b-q4", "cuda", work="144.49"), H100, TABLES
    ) == pytest.approx(1.0)


def test_missing_backend_row_is_scaled_by_the_backend_efficiency():
    cuda = runtime.run_seconds(pod("llama3-8b-q4", "cuda", work="1000"), H100, TABLES)
    vulkan = runtime.run_seconds(pod("llama3-8b-q4", "vulkan", work="1000"), H100, TABLES)
    assert vulkan / cuda == pytest.approx(1 / 0.55, rel=0.05)


def test_default_work_is_an_hour_on_the_fastest_device():
    assert runtime.run_seconds(pod("llama3-8b-q4", "cuda"), H100, TABLES) == pytest.approx(3600)
