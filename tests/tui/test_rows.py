"""Rows from Kubernetes-shaped objects; cells that sort by value; a source's health."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from megagpu.tui import cells, rows
from megagpu.tui.cluster_source import ClusterSource
from megagpu.tui.source import Health, Objects


def gpunode(name: str, backends: dict) -> dict:
    return {
        "metadata": {"name": name},
        "status": {
            "summary": {"backends": ",".join(backends), "devices": 2, "healthy": 1},
            "backends": backends,
            "lastProbeTime": "2026-01-01T00:00:00Z",
        },
    }


def device(index: int, uuid: str, **kw) -> dict:
    return {"index": index, "uuid": uuid, "name": "H100", "memoryMiB": 81920, **kw}


def test_a_device_seen_by_cuda_and_vulkan_is_listed_once_with_both_backends():
    gn = gpunode(
        "n1",
        {
            "cuda": {
                "available": True,
                "devices": [device(0, "U0", usedMiB=40960), device(1, "U1")],
            },
            "vulkan": {"available": True, "devices": [device(0, "U0")]},
            "cpu": {"available": True, "devices": [{"index": 0, "name": "EPYC"}]},
        },
    )
    out = rows.devices([gn])
    assert [(d.index, d.backends) for d in out] == [(0, "cuda+vulkan"), (1, "cuda")]
    assert out[0].memory_share == 0.5 and out[1].memory_share is None
    assert out[1].utilization is None and out[1].temperature_c is None


def test_node_health_names_the_unhealthy_backend_and_unprobed_nodes():
    node = {
        "metadata": {"name": "n1", "labels": {"megagpu.io/gpu.product": "h100"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    bare = {"metadata": {"name": "n2"}, "status": {}}
    gn = gpunode("n1", {"cuda": {"available": True, "healthy": False, "reason": "XID 79"}})
    out = rows.nodes([node, bare], [gn], {"n1": 3}, now=1_767_225_660.0)
    assert out[0].health == "cuda: XID 79" and out[0].ready and out[0].running == 3
    assert out[0].probed_s == 60.0 and out[0].device_class == "h100"
    assert out[1].health == "not probed" and not out[1].ready and out[1].probed_s is None


def test_workload_rows_and_the_newest_decisions_first():
    def gw(name: str, started: str | None, **status) -> dict:
        st = {"phase": "Running", "node": "n1", "backend": "cuda", **status}
        if started:
            st |= {"startedAt": started, "decision": {"mode": "explore"}}
        return {
            "metadata": {
                "name": name,
                "namespace": "a",
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {"workloadType": "training", "model": "m", "gpus": 2},
            "status": st,
        }

    objects = Objects(
        1_767_225_700.0,
        [
            gw("old", "2026-01-01T00:00:10Z", reward=-0.5, durationSeconds=30),
            gw("new", "2026-01-01T00:01:00Z"),
            {"metadata": {"name": "fresh", "namespace": "a"}, "spec": {}},
        ],
        [],
        [],
        None,
        [],
    )
    snap = rows.snapshot(objects, Health("connected"))
    assert [w.name for w in snap.decisions] == ["new", "old"]
    old = snap.decisions[1]
    assert (old.mode, old.reward, old.duration_s, old.gpus, old.age_s) == (
        "explore",
        -0.5,
        30,
        2,
        100,
    )
    fresh = snap.workloads[2]
    assert (fresh.phase, fresh.node, fresh.mode, fresh.age_s) == ("Pending", "-", "-", 0.0)
    assert snap.agent is None
    assert "explore" in old.text and "training" in old.text


def test_cells_sort_by_value_with_missing_values_last():
    values = [cells.age(3600), cells.age(59), cells.age(None), cells.age(86400 * 2)]
    assert [c.plain for c in sorted(values, key=lambda c: c.sort_key)] == ["59s", "1h", "2d", "-"]
    assert cells.temperature(90).style == "red" and cells.temperature(71).style == "yellow"
    assert cells.temperature(None).plain == "n/a"
    assert cells.percent_bar(0.5, width=4).plain == "██··  50%"
    assert cells.sparkline([0.0, 0.5, 1.0]).plain == "▁▅█"
    assert cells.memory(1024, 81920).plain == "1.0/80 GiB"


class _Informer:
    def __init__(self, name: str, error: Exception | None = None, synced: bool = True) -> None:
        self.name, self.error = name, error
        self.synced = type("E", (), {"is_set": lambda _self: synced})()


def _source(**errors: Exception) -> ClusterSource:
    source = ClusterSource.__new__(ClusterSource)
    source.host = "https://127.0.0.1:6443"
    panels = {"workloads": "gpuworkloads", "gpus": "gpunodes", "nodes": "nodes"}
    source._informers = {p: _Informer(n, errors.get(p)) for p, n in panels.items()}
    return source


@pytest.mark.parametrize(
    ("error", "connection", "says"),
    [
        (ApiException(status=403, reason="Forbidden"), "connected", "forbidden"),
        (ApiException(status=404, reason="Not Found"), "connected", "kubectl apply --server-side"),
        (ApiException(status=500, reason="Oops"), "connected", "answered 500"),
        (ConnectionRefusedError(111, "refused"), "unreachable", None),
    ],
)
def test_cluster_health_says_what_is_wrong_and_what_to_do(error, connection, says):
    health = _source(gpus=error).health()
    assert health.connection.startswith(connection)
    if says is None:
        assert "127.0.0.1:6443" in health.connection and not health.problems
    else:
        assert set(health.problems) == {"gpus"} and says in health.problems["gpus"]
        assert "gpunodes" in health.problems["gpus"]


def test_pred_shows_the_predicted_run_time_with_its_uncertainty():
    gw = {
        "metadata": {"name": "p", "namespace": "a", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {},
        "status": {
            "decision": {"mode": "exploit", "predictedSeconds": 25.0, "predictedSigma": 0.1}
        },
    }
    snap = rows.snapshot(Objects(1_767_225_700.0, [gw], [], [], None, []), Health("connected"))
    (row,) = snap.decisions
    cell = cells.predicted(row.predicted_s, row.predicted_sigma)
    assert (cell.plain, cell.sort_key) == ("25s±11%", (0, 25.0))
    assert cells.predicted(None, None).plain == "-"
    assert cells.predicted(25.0, None).plain == "25s"
