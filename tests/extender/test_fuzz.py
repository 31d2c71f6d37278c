"""Hostile bodies: never a crash, never 5xx, never a node that was not asked about."""

import asyncio
import json
import tracemalloc

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from megagpu.extender import app as app_mod
from megagpu.extender import metrics, placement
from tests.extender.helpers import NAMES, make, pod

CAP = 256 * 1024
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
node_names = st.lists(
    st.sampled_from([*NAMES, "ghost", "", "x" * 300]) | st.text(max_size=10), max_size=20
)
pods = st.builds(
    pod,
    st.text(min_size=1, max_size=8),
    st.integers(-3, 12),
    st.sampled_from(["cuda", "cuda,vulkan", "metal", "cpu", "", "rocm", "cuda,,cpu"]),
    st.integers(-10, 10**7),
    st.booleans(),
)
bodies = st.one_of(
    st.builds(lambda p, n: {"Pod": p, "NodeNames": n}, pods, node_names),
    st.builds(
        lambda p, n: {"Pod": p, "Nodes": {"items": [{"metadata": {"name": x}} for x in n]}},
        pods,
        node_names,
    ),
    st.builds(lambda p: {"Pod": p, "NodeNames": [f"n{i}" for i in range(10_000)]}, pods),
    st.dictionaries(
        st.sampled_from(["Pod", "NodeNames", "Nodes", "PodUID", "Node"]), json_values, max_size=4
    ),
    json_values,
)
raw_bodies = st.one_of(
    bodies.map(lambda b: json.dumps(b).encode()),
    bodies.map(lambda b: json.dumps(b).encode()).flatmap(
        lambda raw: st.integers(0, max(len(raw) - 1, 0)).map(lambda cut: raw[:cut])
    ),
    st.binary(max_size=64),
    st.just(b"[" * 5000),
    st.just(b" " * (CAP + 10)),
)


class Harness:
    """The extender app on a test server, driven from synchronous code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.placement, _ = make()
        application = app_mod.make_app(
            self.placement, metrics.Metrics(), ready=lambda: True, max_body_bytes=CAP
        )
        self.client = TestClient(TestServer(application), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def post(self, verb: str, raw: bytes) -> tuple[int, object]:
        async def go():
            response = await self.client.post(f"/{verb}", data=raw)
            text = await response.text()
            return response.status, text

        status, text = self.loop.run_until_complete(go())
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness():
    found = Harness()
    yield found
    found.close()


def check(harness: Harness, verb: str, raw: bytes) -> None:
    status, answer = harness.post(verb, raw)
    assert status in (200, 400, 413), (status, answer)
    if status == 200 and verb == "filter":
        body = json.loads(raw)
        names = body.get("NodeNames")
        if names is None:
            names = [(n.get("metadata") or {}).get("name") for n in body["Nodes"]["items"]]
        groups = [
            set(answer["NodeNames"] or []),
            set(answer["FailedNodes"]),
            set(answer["FailedAndUnresolvableNodes"]),
        ]
        returned = set().union(*groups)
        assert returned <= set(names)
        if not answer["Error"]:  # every node asked about is kept or has one reason
            assert returned == set(names) and sum(map(len, groups)) == len(returned)
    if status == 200 and verb == "prioritize":
        asked = set(json.loads(raw).get("NodeNames") or [])
        assert {h["Host"] for h in answer} <= asked | {
            (n.get("metadata") or {}).get("name")
            for n in (json.loads(raw).get("Nodes") or {}).get("items", [])
        }


def test_hostile_bodies(harness):
    seen = 0

    @settings(
        max_examples=10_000,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.sampled_from(["filter", "prioritize", "bind"]), raw_bodies)
    def one(verb, raw):
        nonlocal seen
        seen += 1
        check(harness, verb, raw)

    one()
    assert seen >= 10_000  # the examples really ran


def test_memory_stays_bounded(harness, monkeypatch):
    monkeypatch.setattr(placement, "REMEMBERED", 500)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(2000):
        body = {"Pod": pod(f"m{i}"), "NodeNames": NAMES}
        status, answer = harness.post("prioritize", json.dumps(body).encode())
        assert status == 200 and max(h["Score"] for h in answer) == 10, answer  # one chosen
        harness.placement.release(f"m{i}")  # its devices, not what was remembered
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert len(harness.placement.remembered) <= 500
    assert len(harness.placement.workloads) <= 500
    assert grown < 64 * 1024 * 1024
