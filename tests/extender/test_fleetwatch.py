"""The fleet watch process: only real changes cross, a restarted child's list replaces the old."""

from __future__ import annotations

import time
from pathlib import Path

from kubernetes import client

from megagpu.core import model
from megagpu.extender import fleetwatch, ledger
from tests.extender.test_incremental import k8s_gpunode, k8s_node


class Conn:
    """The pipe's sending end: keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, message: tuple) -> None:
        self.sent.append(message)


def h100(name: str) -> model.Node:
    return model.Node(name, "h100", ("cuda",), 2, 81920)


def test_a_gpunode_reading_crosses_nothing_and_a_device_failure_crosses_once():
    conn = Conn()
    sender = fleetwatch._Sender(conn)  # type: ignore[arg-type]
    cache = fleetwatch.FleetCache(client.ApiClient(), sender.changes)
    cache.nodes.items["a"] = k8s_node("a", "h100", 2, True, "81920")
    cache.node_event("ADDED", cache.nodes.items["a"])
    assert [m[0] for m in conn.sent] == ["nodes"]
    assert conn.sent[0][1]["a"].devices == 2
    assert conn.sent[0][2]["a"]["metadata"]["labels"]["megagpu.io/gpu.product"] == "h100"

    for utilization in (10, 90, 40):  # the probe's readings: nothing the extender reads
        cache.gpunodes.items["a"] = k8s_gpunode("a", [True, True], utilization)
        cache.node_event("MODIFIED", cache.gpunodes.items["a"])
    assert len(conn.sent) == 2  # the first GpuNode named the device ids: one change
    cache.gpunodes.items["a"] = k8s_gpunode("a", [True, False], 40)
    cache.node_event("MODIFIED", cache.gpunodes.items["a"])
    cache.node_event("MODIFIED", cache.gpunodes.items["a"])
    assert len(conn.sent) == 3 and conn.sent[2][1]["a"].devices == 1
    assert conn.sent[2][2] == {}  # the Node object did not change

    del cache.nodes.items["a"]
    cache.node_event("DELETED", {"metadata": {"name": "a"}})
    cache.node_event("DELETED", {"metadata": {"name": "a"}})
    assert conn.sent[3][1:] == ({"a": None}, {"a": None}) and len(conn.sent) == 4


def test_a_restarted_childs_first_list_drops_the_nodes_it_never_named():
    book = ledger.Ledger()
    failures: list[tuple[str, str]] = []
    watch = fleetwatch.FleetWatch(None, book, lambda name, e: failures.append((name, str(e))))
    watch._handle(("nodes", {"a": h100("a"), "b": h100("b")}, {"a": {}, "b": {}}))
    healthy = {"nodes": (True, ""), "gpunodes": (True, "")}
    assert watch._handle(("health", healthy))
    assert book.fleet.node_names == ("a", "b")

    watch._health, watch._seen = {}, set()  # as after the child died and a new one started
    watch._handle(("nodes", {"b": h100("b")}, {"b": {}}))
    assert not watch._handle(("health", {"nodes": (True, ""), "gpunodes": (False, "refused")}))
    assert book.fleet.node_names == ("b",) and set(watch.objects) == {"b"}
    assert watch.error == "gpunodes: refused"
    watch._handle(("failure", "gpunodes", "KeyError: 'status'"))
    assert failures == [("gpunodes", "KeyError: 'status'")]


def test_the_child_reports_an_unreachable_api_server_and_ends_with_the_watch(tmp_path: Path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\n"
    )
    watch = fleetwatch.FleetWatch(kubeconfig, ledger.Ledger()).start()
    try:
        deadline = time.monotonic() + 60
        while "refused" not in watch.error.lower() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "refused" in watch.error.lower(), watch.error
        assert not watch.healthy()
    finally:
        watch.stop()
    watch._thread.join(30)
    assert not watch._thread.is_alive()
