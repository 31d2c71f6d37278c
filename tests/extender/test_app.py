import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from megagpu.extender import app as app_mod
from megagpu.extender import metrics
from tests.extender.helpers import NAMES, make, pod


async def client_for(ready=lambda: True, max_body=app_mod.MAX_BODY_BYTES):
    p, _ = make()
    m = metrics.Metrics()
    p.on_decision = lambda mode, backend: m.decisions.labels(mode, backend).inc()
    application = app_mod.make_app(p, m, ready=ready, snapshot=True, max_body_bytes=max_body)
    client = TestClient(TestServer(application))
    await client.start_server()
    return client, m


async def test_verbs_answer_in_the_wire_format():
    client, m = await client_for()
    body = {"Pod": pod("a"), "NodeNames": NAMES}
    filtered = await (await client.post("/filter", json=body)).json()
    assert filtered["NodeNames"] == ["h100-0", "t4-0", "mi-0"]
    scores = await (await client.post("/prioritize", json=body)).json()
    assert {s["Host"] for s in scores} == set(NAMES) and max(s["Score"] for s in scores) == 10
    bound = await client.post(
        "/bind", json={"PodName": "p-a", "PodNamespace": "ns", "PodUID": "a", "Node": "h100-0"}
    )
    assert (await bound.json()) == {"Error": ""}
    released = await client.post("/release", json={"PodUID": "a"})
    assert released.status == 200
    for verb in ("filter", "prioritize", "bind"):
        assert m.registry.get_sample_value("megagpu_extender_requests_total", {"verb": verb}) == 1
    assert (
        m.registry.get_sample_value(
            "megagpu_extender_decisions_total", {"mode": "exploit", "backend": "cuda"}
        )
        == 1
    )
    await client.close()


@pytest.mark.parametrize(
    "raw,needle",
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "JSON object"),
        (json.dumps({"NodeNames": ["a"]}).encode(), "Pod"),
        (json.dumps({"Pod": {"metadata": {}}, "NodeNames": [1]}).encode(), "NodeNames"),
    ],
)
async def test_malformed_bodies_get_400_with_a_message(raw, needle):
    client, m = await client_for()
    response = await client.post("/filter", data=raw)
    assert response.status == 400
    assert needle in (await response.json())["Error"]
    assert m.registry.get_sample_value("megagpu_extender_errors_total", {"kind": "malformed"})
    await client.close()


async def test_bodies_over_the_cap_get_413():
    client, _ = await client_for(max_body=1024)
    response = await client.post("/filter", data=b"{" + b" " * 4096 + b"}")
    assert response.status == 413
    await client.close()


async def test_readyz_follows_the_caches():
    state = {"ready": False}
    client, _ = await client_for(ready=lambda: state["ready"])
    assert (await client.get("/readyz")).status == 503
    state["ready"] = True
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/healthz")).status == 200
    await client.close()


async def test_metrics_app_serves_prometheus_text():
    m = metrics.Metrics()
    m.requests.labels("filter").inc()
    client = TestClient(TestServer(app_mod.make_metrics_app(m, lambda: True)))
    await client.start_server()
    text = await (await client.get("/metrics")).text()
    assert 'megagpu_extender_requests_total{verb="filter"} 1.0' in text
    await client.close()
