"""Hostile bodies: never a crash, never 5xx, never a node that was not asked about."""

import asyncio
import json
import tracemalloc

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


HARNESS = Harness()
SEEN = {"count": 0}


@settings(
    max_examples=10_000, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(st.sampled_from(["filter", "prioritize", "bind"]), raw_bodies)
def test_hostile_bodies(verb, raw):
    SEEN["count"] += 1
    status, answer = HARNESS.post(verb, raw)
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


def test_fuzz_ran_and_memory_stays_bounded():
    assert SEEN["count"] >= 10_000
    assert len(HARNESS.placement.remembered) <= placement.REMEMBERED
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(2000):
        body = {"Pod": pod(f"m{i}"), "NodeNames": NAMES}
        HARNESS.post("prioritize", json.dumps(body).encode())
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown < 64 * 1024 * 1024
