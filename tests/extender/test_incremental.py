"""Incremental fleet updates equal a full rebuild, whatever the sequence of node events."""

from __future__ import annotations

import copy
import logging

from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client

from megagpu.core import fleet, model
from megagpu.extender import cluster, ledger, server
from megagpu.kube import convert, names

NAMES = [f"n{i}" for i in range(6)]
MANY = [f"m{i}" for i in range(14)]
"""Enough names for a batch over the ledger's threshold (laid out at once)."""
DEVICE_CLASSES = ["h100", "a100", "cpu"]


def canonical(f: fleet.Fleet) -> tuple[object, ...]:
    """What a fleet means, independent of row and node order."""
    assert f.node_names == tuple(n.name for n in f.nodes)
    assert len(set(f.action_keys)) == len(f.action_keys)
    assert set(f.action_keys) == {f.action_keys[a] for a in f.row_action_id.tolist()}
    rows = sorted(
        (
            f.node_names[int(f.row_node[r])],
            str(f.row_backend[r]),
            int(f.row_backend_id[r]),
            f.action_keys[int(f.row_action_id[r])],
            float(f.row_fp16_tflops[r]),
            float(f.row_fp32_tflops[r]),
            float(f.row_mem_gbps[r]),
            float(f.row_efficiency[r]),
            int(f.row_slots[r]),
            int(f.row_memory_mib[r]),
        )
        for r in range(len(f.row_node))
    )
    per_node = sorted(
        (
            node.name,
            node,
            int(f.node_devices[i]),
            int(f.node_memory_mib[i]),
            bool(f.node_healthy[i]),
            tuple(f.node_backends[i].tolist()),
        )
        for i, node in enumerate(f.nodes)
    )
    return tuple(rows), tuple(per_node)


def counts(book: ledger.Ledger) -> dict[str, tuple[int, int]]:
    """Free devices and CPU slots by node name."""
    layout = book.layout()
    assert len(layout.free) == len(layout.fleet.nodes) == len(layout.positions)
    return {
        name: (int(layout.free[i]), int(layout.cpu_free[i]))
        for name, i in layout.positions.items()
        if layout.fleet.nodes[i].name == name
    }


nodes = st.builds(
    lambda name, device, backends, devices, memory, fp16, healthy: model.Node(
        name,
        device,
        tuple(backends) if device != "cpu" else ("cpu",),
        devices if device != "cpu" else 0,
        memory,
        model.Benchmarks(fp16_tflops=fp16, fp32_tflops=fp16 / 2, mem_gbps=fp16 * 3),
        healthy,
    ),
    st.sampled_from(MANY),
    st.sampled_from(DEVICE_CLASSES),
    st.lists(st.sampled_from(["cuda", "vulkan", "cpu"]), min_size=1, max_size=3, unique=True),
    st.integers(0, 8),
    st.sampled_from([16384, 81920]),
    st.sampled_from([0.0, 100.0, 990.0]),
    st.booleans(),
)
events = st.lists(
    st.one_of(
        st.tuples(st.just("node"), nodes),
        st.tuples(st.just("remove"), st.sampled_from(MANY)),
        st.tuples(st.just("hold"), st.integers(0, 5), st.sampled_from(MANY), st.integers(0, 3)),
        st.tuples(st.just("release"), st.integers(0, 5)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events, st.integers(1, 30), st.sampled_from([0, ledger.REBUILD_MIN_CHANGES]))
def test_ledger_updates_equal_a_rebuild(sequence, batch, rebuild_min):
    default, ledger.REBUILD_MIN_CHANGES = ledger.REBUILD_MIN_CHANGES, rebuild_min
    try:
        check_ledger_updates(sequence, batch)
    finally:
        ledger.REBUILD_MIN_CHANGES = default


def check_ledger_updates(sequence, batch):
    incremental, current, holds = ledger.Ledger(), {}, {}
    pending: dict[str, model.Node | None] = {}
    for step, event in enumerate(sequence, 1):
        if event[0] == "node":
            current[event[1].name] = pending[event[1].name] = event[1]
        elif event[0] == "remove":
            current.pop(event[1], None)
            pending[event[1]] = None
        elif event[0] == "hold":
            _, uid, node, count = event
            holds[str(uid)] = (node, tuple(range(count)))
            incremental.hold(str(uid), node, tuple(range(count)))
        else:
            holds.pop(str(event[1]), None)
            incremental.release(str(event[1]))
        if step % batch == 0 or step == len(sequence):
            incremental.apply(pending)
            pending = {}
            rebuilt = ledger.Ledger(sorted(current.values(), key=lambda n: n.name))
            for uid, (node, devices) in holds.items():
                rebuilt.hold(uid, node, devices)
            assert canonical(incremental.fleet) == canonical(rebuilt.fleet)
            assert counts(incremental) == counts(rebuilt)
            assert all(incremental.holders(n) == rebuilt.holders(n) for n in MANY)


def test_an_unchanged_node_changes_nothing():
    node = model.Node("a", "h100", ("cuda",), 8, 81920)
    book = ledger.Ledger([node])
    before = (book.fleet, book.generation)
    book.apply({"a": model.Node("a", "h100", ("cuda",), 8, 81920)})
    assert (book.fleet, book.generation) == before
    book.apply({"a": model.Node("a", "h100", ("cuda",), 8, 81920, healthy=False)})
    assert book.fleet.node_names is before[0].node_names  # same node set, names reused
    assert book.generation == before[1] + 1


# --- the extender's informer handlers ----------------------------------------------------


def k8s_node(name: str, device: str, devices: int, ready: bool, memory: str) -> dict:
    """A Node object as the API server sends it (``memory`` is the raw label value)."""
    labels = {
        names.LABEL_BACKEND.format(backend="cuda"): "true",
        names.LABEL_GPU_PRODUCT: device,
        names.LABEL_GPU_MEMORY: memory,
    }
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {
            "allocatable": {names.RESOURCE_GPU: str(devices)},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def k8s_gpunode(name: str, healthy: list[bool], utilization: int) -> dict:
    """A GpuNode whose devices are healthy or not, with a utilization that changes often."""
    devices = [
        {"index": i, "uuid": f"GPU-{name}-{i}", "healthy": h, "utilization": utilization}
        for i, h in enumerate(healthy)
    ]
    return {"metadata": {"name": name}, "status": {"devices": devices}}


node_events = st.lists(
    st.one_of(
        st.tuples(
            st.just("node"),
            st.sampled_from(NAMES),
            st.sampled_from(["h100", "a100"]),
            st.integers(0, 4),
            st.booleans(),
            st.sampled_from(["81920", "16384", "-5", "lots"]),  # "-5": malformed, skipped
        ),
        st.tuples(
            st.just("gpunode"),
            st.sampled_from(NAMES),
            st.lists(st.booleans(), max_size=4),
            st.integers(0, 100),
        ),
        st.tuples(st.just("delete-node"), st.sampled_from(NAMES)),
        st.tuples(st.just("delete-gpunode"), st.sampled_from(NAMES)),
        st.tuples(st.just("relist"), st.booleans()),
    ),
    max_size=40,
)


def full_rebuild(state: cluster.ClusterState) -> list[model.Node]:
    """What the extender rebuilt on every event before: convert every node, skip bad ones."""
    converted = []
    for name, node in sorted(state.nodes.items.items()):
        try:
            converted.append(convert.node_from_k8s(node, state.gpunodes.items.get(name)))
        except ValueError:
            continue
    return converted


@settings(max_examples=150, deadline=None)
@given(node_events)
def test_cluster_events_equal_a_rebuild(sequence):
    book = ledger.Ledger()
    policies = server.ReloadingPolicy(None, lambda version: None)  # type: ignore[arg-type]
    state = cluster.ClusterState(client.ApiClient(), "ns", book, policies)
    logging.getLogger("megagpu.extender").disabled = True
    try:
        for event in sequence:
            if event[0] == "relist":
                # a list's changes are handed over when the list ends
                informer = state.nodes if event[1] else state.gpunodes
                informer.relisting = True
                for obj in list(informer.items.values()):
                    state._node_event("MODIFIED", obj)
                informer.relisting = False
                state._flush()
                continue
            kind, name = event[0], event[1]
            if kind == "node":
                obj = k8s_node(name, *event[2:])
                state.nodes.items[name] = obj
            elif kind == "gpunode":
                obj = k8s_gpunode(name, event[2], event[3])
                state.gpunodes.items[name] = obj
            elif kind == "delete-node":
                obj = state.nodes.items.pop(name, {"metadata": {"name": name}})
            else:
                obj = state.gpunodes.items.pop(name, {"metadata": {"name": name}})
            state._node_event("DELETED" if kind.startswith("delete") else "MODIFIED", obj)
            assert canonical(book.fleet) == canonical(fleet.Fleet.build(full_rebuild(state)))
    finally:
        logging.getLogger("megagpu.extender").disabled = False


def test_a_malformed_node_is_skipped_with_a_log_line(caplog):
    book = ledger.Ledger()
    policies = server.ReloadingPolicy(None, lambda version: None)  # type: ignore[arg-type]
    state = cluster.ClusterState(client.ApiClient(), "ns", book, policies)
    state.nodes.relisting = True
    for name, memory in (("good", "81920"), ("bad", "-5")):
        state.nodes.items[name] = k8s_node(name, "h100", 2, True, memory)
        state._node_event("ADDED", state.nodes.items[name])
    state.nodes.relisting = False
    with caplog.at_level(logging.WARNING, "megagpu.extender"):
        state._flush()
    assert book.fleet.node_names == ("good",)
    assert any("node bad skipped" in r.getMessage() for r in caplog.records)


def test_the_trimmed_objects_convert_as_the_full_ones():
    node = k8s_node("a", "h100", 2, True, "81920")
    gpunode = k8s_gpunode("a", [True, False], 50)
    gpunode["status"]["backends"] = {
        "cuda": {
            "available": True,
            "devices": [{"index": 0, "utilization": 50, "usedMiB": 100}],
            "benchmarks": {"fp16Tflops": 990.0, "fp32Tflops": 60.0, "memGBps": 3350.0},
        }
    }
    for obj in (node, gpunode):
        obj["metadata"]["managedFields"] = [{"manager": "probe", "fieldsV1": {"f:status": {}}}]
    full = convert.node_from_k8s(copy.deepcopy(node), copy.deepcopy(gpunode))
    slim = cluster._slim_gpunode(copy.deepcopy(gpunode))
    assert convert.node_from_k8s(cluster._slim(copy.deepcopy(node)), slim) == full
    assert "managedFields" not in slim["metadata"]
    assert "devices" not in slim["status"]["backends"]["cuda"]
    assert full.benchmarks.fp16_tflops == 990.0
