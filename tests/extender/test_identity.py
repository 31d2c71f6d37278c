"""Device identity in the extender: which devices bind hands out, and which it never does."""

import asyncio
import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from megagpu.core import model, qpolicy
from megagpu.extender import ledger, placement, server
from megagpu.kube import convert
from tests.extender.helpers import NAMES, Recorder, args, binding, make, pod
from tests.helpers import node


def _placement(*nodes: model.Node) -> tuple[placement.Placement, Recorder]:
    recorder = Recorder()
    policy = qpolicy.QPolicy(qpolicy.Params(epsilon_start=0.0, epsilon_min=0.0))
    return (
        placement.Placement(
            ledger.Ledger(nodes), server.FixedPolicy(policy), recorder, random.Random(0)
        ),
        recorder,
    )


def _bind(p: placement.Placement, uid: str, node_name: str, **kw) -> dict[str, str]:
    """Bind pod ``uid`` (a workload of ``kw``, one cuda/vulkan GPU by default) to ``node_name``."""
    p.workloads.setdefault(uid, convert.workload_from_pod(pod(uid, **kw)))
    return asyncio.run(p.bind(binding(uid, node_name)))


def _gpunode(healthy: list[bool]) -> dict:
    return {
        "status": {
            "devices": [
                {"index": i, "id": f"GPU-{i}", "uuid": f"GPU-{i}", "backend": "cuda", "healthy": h}
                for i, h in enumerate(healthy)
            ]
        }
    }


def _k8s_node(allocatable: int) -> dict:
    return {
        "metadata": {
            "name": "n",
            "labels": {"megagpu.io/backend.cuda": "true", "megagpu.io/gpu.product": "h100"},
        },
        "status": {
            "allocatable": {"megagpu.io/gpu": str(allocatable)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_a_dead_gpu_is_never_assigned_and_the_last_one_is():
    gpunode = _gpunode([i != 3 for i in range(8)])
    n = convert.node_from_k8s(_k8s_node(7), gpunode)
    assert n.devices == 7 and n.device_indices == (0, 1, 2, 4, 5, 6, 7)
    p, rec = _placement(n)
    for i in range(7):
        assert _bind(p, f"u{i}", "n") == {"Error": ""}
    handed = [int(a["megagpu.io/assigned-devices"]) for _, a in rec.calls]
    assert sorted(handed) == [0, 1, 2, 4, 5, 6, 7]
    ids = [a["megagpu.io/assigned-device-ids"] for _, a in rec.calls]
    assert ids == [f"GPU-{i}" for i in handed]


def test_the_gpunode_list_wins_over_a_stale_allocatable():
    n = convert.node_from_k8s(_k8s_node(8), _gpunode([True, False, True, True]))
    assert n.device_indices == (0, 2, 3)


def test_a_node_without_a_device_list_counts_indices_from_zero():
    n = convert.node_from_k8s(_k8s_node(2))
    assert n.device_indices == (0, 1) and n.device_id(0) == ""


def test_devices_held_by_running_pods_are_never_assigned_again():
    p, rec = make()
    p.ledger.hold("running", "t4-0", (1, 2))
    assert _bind(p, "a", "t4-0") == {"Error": ""}
    assert _bind(p, "b", "t4-0") == {"Error": ""}
    assert [a["megagpu.io/assigned-devices"] for _, a in rec.calls] == ["0", "3"]


def test_a_full_node_fails_bind_with_an_error_and_writes_nothing():
    p, rec = make()
    p.ledger.hold("running", "t4-0", (0, 1, 2))
    assert _bind(p, "a", "t4-0") == {"Error": ""}
    result = _bind(p, "b", "t4-0")
    assert "no free devices on t4-0" in result["Error"] and "needs 1" in result["Error"]
    assert len(rec.calls) == 1 and "b" not in p.ledger.holders("t4-0")


def test_cpu_only_pods_never_hold_gpu_slots():
    gpu_and_cpu = dataclasses.replace(
        node("g", "h100", devices=8, backends=("cuda", "cpu")), name="g"
    )
    p, rec = _placement(gpu_and_cpu)
    for i in range(8):
        assert _bind(p, f"cpu{i}", "g", gpus=0, backends="cpu") == {"Error": ""}
    assert all(a["megagpu.io/assigned-devices"] == "" for _, a in rec.calls)
    layout = p.ledger.layout()
    assert layout.free.tolist() == [8]
    assert layout.cpu_free.tolist() == [0]
    gpu_pod = pod("gpu", gpus=1, backends="cuda")
    assert p.filter(args(gpu_pod, ["g"]))["NodeNames"] == ["g"]
    assert _bind(p, "gpu", "g", gpus=1, backends="cuda") == {"Error": ""}
    assert rec.calls[-1][1]["megagpu.io/assigned-devices"] == "0"
    cpu_pod = pod("cpu8", gpus=0, backends="cpu")
    assert "CPU slots busy" in p.filter(args(cpu_pod, ["g"]))["FailedNodes"]["g"]


def test_cpu_only_binds_to_a_gpu_only_node_are_errors_that_hold_nothing():
    p, rec = make()
    for i in range(8):
        result = _bind(p, f"c{i}", "h100-0", gpus=0, backends="cpu")
        assert "offers no backend the workload accepts" in result["Error"]
    assert rec.calls == [] and p.ledger.holders("h100-0") == {}
    assert p.ledger.layout().free[NAMES.index("h100-0")] == 8
    assert _bind(p, "g", "h100-0") == {"Error": ""}
    assert rec.calls[-1][1]["megagpu.io/assigned-devices"] == "0"


def test_releasing_a_cpu_pod_frees_its_cpu_slot():
    p, _ = make()
    assert _bind(p, "c", "cpu-0", gpus=0, backends="cpu") == {"Error": ""}
    at = NAMES.index("cpu-0")
    assert p.ledger.layout().cpu_free[at] == model.CPU_SLOTS_PER_NODE - 1
    p.ledger.release("c")
    assert p.ledger.layout().cpu_free[at] == model.CPU_SLOTS_PER_NODE


ops = st.lists(
    st.tuples(
        st.sampled_from(["take", "hold", "release", "tentative"]),
        st.integers(0, 5),  # pod
        st.integers(0, 4),  # devices asked for (take, tentative) or first held (hold)
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(st.sets(st.integers(0, 7), max_size=8), ops)
def test_the_ledger_never_gives_a_device_twice_nor_an_unhealthy_one(healthy, steps):
    usable = tuple(sorted(healthy))
    n = dataclasses.replace(
        node("g", "h100", devices=len(usable), backends=("cuda", "cpu")),
        name="g",
        device_ids=tuple((i, f"GPU-{i}") for i in usable),
    )
    book = ledger.Ledger([n])
    taken: dict[str, tuple[int, ...]] = {}
    for op, who, count in steps:
        uid = f"p{who}"
        if op == "take":
            before = taken.get(uid)
            got = book.take(uid, "g", count)
            if got is not None and got != before:  # the same again: bind is idempotent
                others = {d for u, ds in taken.items() if u != uid for d in ds}
                assert set(got) <= set(usable) and not set(got) & others and len(got) == count
            if got is None:  # refused only when too few usable devices are free of others
                others = {d for u, ds in taken.items() if u != uid for d in ds}
                assert len(set(usable) - others) < count
            else:
                taken[uid] = got
        elif op == "hold":  # the informer saw a pod holding a device (maybe a dead one now)
            book.hold(uid, "g", (count,))
            taken[uid] = (count,)
        elif op == "tentative":
            book.tentative(uid, "g", count)
            taken.pop(uid, None)
        else:
            book.release(uid)
            taken.pop(uid, None)
        held = {d for ds in book.holders("g").values() for d in ds} & set(usable)
        tentative = sum(c for (node_, c, _) in book._tentative.values() if node_ == "g")
        assert book.layout().free[0] == len(usable) - len(held) - tentative
