import json

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


def pod(model_name, backend, gpus=1, work=None, kind="inference", declared=None):
    annotations = {
        "megagpu.io/model": model_name,
        "megagpu.io/gpus": str(gpus),
        "megagpu.io/backends": "cuda,vulkan,metal",
        "megagpu.io/workload-type": kind,
        "megagpu.io/assigned-backend": backend,
    }
    if work:
        annotations["megagpu.io/sim-work"] = work
    if declared:
        annotations["megagpu.io/work-amount"] = declared
        annotations["megagpu.io/work-unit"] = "tokens"
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
    ).seconds == pytest.approx(1.0)


def test_missing_backend_row_is_scaled_by_the_backend_efficiency():
    cuda = runtime.run_seconds(pod("llama3-8b-q4", "cuda", work="1000"), H100, TABLES).seconds
    vulkan = runtime.run_seconds(pod("llama3-8b-q4", "vulkan", work="1000"), H100, TABLES).seconds
    assert vulkan / cuda == pytest.approx(1 / 0.55, rel=0.05)


def test_default_work_is_an_hour_on_the_fastest_device():
    plan = runtime.run_seconds(pod("llama3-8b-q4", "cuda"), H100, TABLES)
    assert plan.seconds == pytest.approx(3600) and plan.work == pytest.approx(3600 * 144.49)


def test_declared_work_sizes_the_run_and_the_report_says_it():
    declared = pod("llama3-8b-q4", "cuda", declared="288.98")
    plan = runtime.run_seconds(declared, H100, TABLES)
    assert plan == (pytest.approx(2.0), pytest.approx(288.98))
    annotations = declared["metadata"]["annotations"]
    report = json.loads(runtime.termination_message(annotations, plan.work))
    assert report == {"megagpu.io/work": 288.98, "megagpu.io/work-unit": "tokens"}
    silent = {**annotations, "megagpu.io/sim-report": "false"}
    assert runtime.termination_message(silent, plan.work) == ""


def test_sim_work_is_the_true_work_even_when_another_size_is_declared():
    plan = runtime.run_seconds(
        pod("llama3-8b-q4", "cuda", work="144.49", declared="9999"), H100, TABLES
    )
    assert plan.seconds == pytest.approx(1.0) and plan.work == pytest.approx(144.49)


def test_a_completion_survives_the_api_server_being_away(monkeypatch):
    """The completion loop keeps a pod whose completion failed and tries it again."""
    import heapq
    import threading
    import time

    from kubernetes import client
    from urllib3.exceptions import MaxRetryError

    rt = runtime.Runtime(client.ApiClient())
    done = threading.Event()
    calls = []

    def complete(namespace, name, simulated):
        calls.append(name)
        if len(calls) == 1:
            raise MaxRetryError(None, "/api/v1/pods", "connection refused")
        done.set()

    rt._complete = complete
    monkeypatch.setattr(runtime, "RETRY_S", 0.05)
    with rt._lock:
        heapq.heappush(rt._due, (time.monotonic(), "uid-1", "ns", "pod-1", runtime.Plan(1, 1)))
    threading.Thread(target=rt._loop, daemon=True).start()
    assert done.wait(5), calls
    assert calls == ["pod-1", "pod-1"]


def test_a_pod_meant_to_run_for_ages_does_not_stop_the_completion_loop():
    import heapq
    import threading
    import time

    from kubernetes import client

    rt = runtime.Runtime(client.ApiClient())
    done = threading.Event()
    rt._complete = lambda namespace, name, simulated: done.set()
    with rt._lock:
        heapq.heappush(
            rt._due,
            (time.monotonic() + 1e300, "uid-forever", "ns", "forever", runtime.Plan(1e300, 1)),
        )
    worker = threading.Thread(target=rt._loop, daemon=True)
    worker.start()
    time.sleep(0.2)
    assert worker.is_alive()
    with rt._lock:  # a pod due now still completes
        heapq.heappush(rt._due, (time.monotonic(), "uid-now", "ns", "now", runtime.Plan(1, 1)))
        rt._lock.notify()
    assert done.wait(5)
