import asyncio
import json

import pytest

from megagpu.core import qpolicy
from megagpu.extender import placement
from tests.extender.helpers import NAMES, args, binding, make, pod


def test_filter_gives_a_reason_for_every_rejected_node():
    p, _ = make()
    result = p.filter(args(pod("a", gpus=2, backends="cuda,vulkan"), [*NAMES, "ghost"]))
    assert result["NodeNames"] == ["h100-0", "t4-0", "mi-0"]
    assert set(result["FailedAndUnresolvableNodes"]) == {"mac-0", "cpu-0"}
    assert "no acceptable backend" in result["FailedAndUnresolvableNodes"]["cpu-0"]
    assert result["FailedNodes"] == {"ghost": "unknown node"}
    assert set(result) == {
        "Nodes",
        "NodeNames",
        "FailedNodes",
        "FailedAndUnresolvableNodes",
        "Error",
    }


def test_too_big_or_too_much_memory_can_never_fit():
    p, _ = make()
    never = p.filter(args(pod("a", gpus=6, memory=20000)))["FailedAndUnresolvableNodes"]
    assert "needs 6 devices; node has 4" in never["t4-0"]
    assert (
        "MiB per device"
        in p.filter(args(pod("b", gpus=1, memory=10**6)))["FailedAndUnresolvableNodes"]["h100-0"]
    )


def test_busy_devices_may_fit_later():
    p, _ = make()
    p.ledger.hold("other", "t4-0", (0, 1, 2))
    result = p.filter(args(pod("a", gpus=2), ["t4-0"]))
    assert result["NodeNames"] == [] and "devices busy: 1 free" in result["FailedNodes"]["t4-0"]


def test_busy_nodes_get_the_reason_of_their_own_free_count():
    p, _ = make()
    p.ledger.hold("other", "t4-0", (0, 1, 2))
    p.ledger.hold("more", "mi-0", (0, 1, 2, 3))
    p.ledger.hold("most", "h100-0", tuple(range(7)))
    result = p.filter(args(pod("a", gpus=2, backends="cuda,vulkan"), [*NAMES, "ghost"]))
    assert result["NodeNames"] == []
    assert result["FailedNodes"] == {
        "t4-0": "devices busy: 1 free, needs 2",
        "mi-0": "devices busy: 0 free, needs 2",
        "h100-0": "devices busy: 1 free, needs 2",
        "ghost": "unknown node",
    }
    assert set(result["FailedAndUnresolvableNodes"]) == {"mac-0", "cpu-0"}


def test_unlabelled_pods_pass_through():
    p, _ = make()
    plain = pod("a", labelled=False)
    assert p.filter(args(plain))["NodeNames"] == NAMES
    assert p.prioritize(args(plain)).as_list() == []


def test_filter_has_no_side_effects():
    p, _ = make()
    before = p.ledger.layout().free.tolist()
    p.filter(args(pod("a", gpus=4)))
    assert p.ledger.layout().free.tolist() == before


def test_prioritize_scores_the_choice_10_and_others_0_to_9():
    p, _ = make()
    scores = {
        h["Host"]: h["Score"]
        for h in p.prioritize(args(pod("a"), ["h100-0", "t4-0", "mi-0"])).as_list()
    }
    assert scores["h100-0"] == 10
    assert all(0 <= s <= 9 for n, s in scores.items() if n != "h100-0")


def test_bind_writes_decision_and_devices_once():
    p, rec = make()
    p.filter(args(pod("a", gpus=2)))
    p.prioritize(args(pod("a", gpus=2), ["h100-0", "t4-0"]))
    assert asyncio.run(p.bind(binding("a", "h100-0"))) == {"Error": ""}
    ((call, annotations),) = rec.calls
    decision = json.loads(annotations["megagpu.io/decision"])
    assert decision["mode"] == "exploit" and decision["score"] == 10
    assert set(decision) == placement.DECISION_KEYS
    assert annotations["megagpu.io/assigned-devices"] == "0,1"
    assert annotations["megagpu.io/assigned-backend"] == "cuda"
    assert len(annotations["megagpu.io/decision"]) <= placement.DECISION_MAX_BYTES
    # idempotent: the same bind again is success and keeps the devices
    assert asyncio.run(p.bind(binding("a", "h100-0"))) == {"Error": ""}
    assert p.ledger.holders("h100-0")["a"] == (0, 1)


def test_bind_modes_forced_and_overridden():
    p, rec = make()
    p.filter(args(pod("f")))
    asyncio.run(p.bind(binding("f", "t4-0")))
    assert json.loads(rec.calls[-1][1]["megagpu.io/decision"])["mode"] == "forced"
    p.prioritize(args(pod("o"), ["h100-0", "t4-0"]))
    asyncio.run(p.bind(binding("o", "t4-0")))
    assert json.loads(rec.calls[-1][1]["megagpu.io/decision"])["mode"] == "overridden"


def test_already_bound_elsewhere_is_an_error():
    p, rec = make()
    p.filter(args(pod("a")))
    rec.bound["a"] = "t4-0"
    assert "already bound" in asyncio.run(p.bind(binding("a", "h100-0")))["Error"]
    assert "a" not in p.ledger.holders("h100-0")


def test_concurrent_binds_never_share_a_device():
    p, rec = make()

    async def slow_binder(a, annotations):
        await asyncio.sleep(0.001)
        await rec(a, annotations)

    p.binder = slow_binder
    uids = [f"u{i}" for i in range(4)]
    for uid in uids:
        p.filter(args(pod(uid, gpus=2), ["h100-0"]))

    async def all_binds():
        return await asyncio.gather(*(p.bind(binding(u, "h100-0")) for u in uids))

    asyncio.run(all_binds())
    devices = [d for _, ann in rec.calls for d in ann["megagpu.io/assigned-devices"].split(",")]
    assert sorted(devices) == [str(i) for i in range(8)]


def test_not_ready_means_error_so_the_scheduler_falls_back():
    p, _ = make()
    p.ready = lambda: False
    assert p.filter(args(pod("a")))["Error"] == placement.NOT_READY
    assert p.prioritize(args(pod("a"))).as_list() == []
    assert asyncio.run(p.bind(binding("a", "h100-0")))["Error"] == placement.NOT_READY


@pytest.mark.parametrize("bad", [{"megagpu.io/gpus": "two"}, {"megagpu.io/workload-type": "x"}])
def test_garbled_annotations_are_domain_errors(bad):
    p, _ = make()
    result = p.filter(args(pod("a", **bad)))
    assert result["Error"] and result["NodeNames"] == []


def test_prioritize_answers_unknown_nodes_with_zero_even_with_no_nodes_known():
    p, _ = make()
    p.ledger.set_nodes([])
    answer = p.prioritize(args(pod("a"), ["ghost", 'odd"name']))
    assert answer.as_list() == [{"Host": "ghost", "Score": 0}, {"Host": 'odd"name', "Score": 0}]


def test_a_request_keeps_one_node_set_while_the_informer_replaces_it():
    p, _ = make()
    taken = p.ledger.layout()
    p.ledger.set_nodes(p.ledger.fleet.nodes[:1])
    assert len(taken.free) == len(taken.fleet.nodes) == len(taken.positions) == len(NAMES)
    assert all(taken.fleet.nodes[i].name == n for n, i in taken.positions.items())
    now = p.ledger.layout()
    assert len(now.free) == len(now.fleet.nodes) == len(now.positions) == 1


def test_prioritize_after_filter_matches_a_fresh_lookup_even_when_the_nodes_change():
    """Prioritize reuses filter's positions only for the very node set filter saw."""
    p, _ = make()
    kept = p.filter(args(pod("a"), NAMES))["NodeNames"]
    fresh, _ = make()
    assert p.prioritize(args(pod("a"), kept)).as_list() == (
        fresh.prioritize(args(pod("a"), kept)).as_list()
    )
    p.ledger.release("a")
    p.filter(args(pod("b"), NAMES))
    reordered = list(reversed(p.ledger.fleet.nodes))
    p.ledger.set_nodes(reordered)
    fresh.ledger.set_nodes(reordered)
    fresh.ledger.release("a")
    assert p.prioritize(args(pod("b"), kept)).as_list() == (
        fresh.prioritize(args(pod("b"), kept)).as_list()
    )


def test_a_pod_is_converted_again_when_its_version_changes():
    p, _ = make()
    first = pod("a", gpus=1)
    first["metadata"]["resourceVersion"] = "1"
    p.filter(args(first))
    again = pod("a", gpus=4)
    again["metadata"]["resourceVersion"] = "1"  # same version: the workload filter saw
    p.prioritize(args(again, ["h100-0"]))
    assert p.workloads["a"].gpus == 1
    changed = pod("a", gpus=4)
    changed["metadata"]["resourceVersion"] = "2"
    p.prioritize(args(changed, ["h100-0"]))
    assert p.workloads["a"].gpus == 4
    unversioned = pod("a", gpus=2)  # no resourceVersion: always converted
    p.filter(args(unversioned))
    assert p.workloads["a"].gpus == 2


def _versioned(uid: str, **kw: object) -> dict:
    body = pod(uid, **kw)  # type: ignore[arg-type]
    body["metadata"]["resourceVersion"] = "7"
    return body


def test_prepared_decision_is_what_prioritize_would_decide():
    """prepare (run after filter's answer is written) decides ahead; the answer is the same."""
    ahead, _ = make(seed=3)
    plain, _ = make(seed=3)
    kept = ahead.filter(args(_versioned("a"), NAMES))["NodeNames"]
    ahead.prepare()
    plain.filter(args(_versioned("a"), NAMES))
    assert ahead._prepared is not None
    answer = ahead.prioritize(args(_versioned("a"), kept)).as_list()
    assert answer == plain.prioritize(args(_versioned("a"), kept)).as_list()
    assert ahead.remembered["a"] == plain.remembered["a"]
    assert ahead._prepared is None


def test_a_prepared_decision_is_dropped_when_anything_changed():
    p, _ = make()
    kept = p.filter(args(_versioned("a", gpus=4), NAMES))["NodeNames"]
    p.prepare()
    assert p._prepared.remembered.node == "h100-0"
    p.ledger.hold("other", "h100-0", tuple(range(6)))  # only 2 of 8 left: 4 do not fit
    p.prioritize(args(_versioned("a", gpus=4), kept))
    assert p.remembered["a"].node != "h100-0"
    p.ledger.release("other")
    p.ledger.release("a")
    p.filter(args(_versioned("b"), NAMES))
    p.prepare()
    reloaded = qpolicy.QPolicy(p.policies.current().params)
    reloaded.version = 42
    p.policies.policy = reloaded
    p.prioritize(args(_versioned("b"), kept))
    assert p.remembered["b"].version == 42
    p.filter(args(_versioned("c"), NAMES))
    p.prepare()
    p.prioritize(args(_versioned("c"), ["t4-0", "mi-0"]))
    assert p.remembered["c"].node in ("t4-0", "mi-0")
