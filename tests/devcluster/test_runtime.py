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
        heapq.heappush(rt._due, (time.monotonic(), "uid-1", "ns", "pod-1", 1.0))
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
        heapq.heappush(rt._due, (time.monotonic() + 1e300, "uid-forever", "ns", "forever", 1e300))
    worker = threading.Thread(target=rt._loop, daemon=True)
    worker.start()
    time.sleep(0.2)
    assert worker.is_alive()
    with rt._lock:  # a pod due now still completes
        heapq.heappush(rt._due, (time.monotonic(), "uid-now", "ns", "now", 1.0))
        rt._lock.notify()
    assert done.wait(5)
