import json
import math
import random

import pytest

from megagpu.core import qpolicy, qstate
from tests.core.test_qpolicy import FAST, SLOW, outcome
from tests.helpers import node, view, workload


def trained() -> qpolicy.QPolicy:
    policy = qpolicy.QPolicy()
    rng = random.Random(0)
    w = workload(work=100.0)
    v = view([SLOW, FAST], w)
    for i in range(30):
        row = policy.choose(w, v, rng).row
        policy.observe(outcome(f"u{i}", w, [SLOW, FAST][row], 5.0 if row == 0 else 7.0))
    for i in range(6):  # the fast device slows: a drift to keep (a median of the last nine)
        policy.observe(outcome(f"late{i}", w, FAST, 3.5))
    return policy


def test_round_trip_keeps_values_and_counters():
    policy = trained()
    again = qstate.loads(qstate.dumps(policy))
    w = workload(work=100.0)
    v = view([SLOW, FAST], w)
    assert list(again.values(w, v)) == pytest.approx(list(policy.values(w, v)), abs=1e-5)
    assert (again.version, again.updates, again.decisions) == (
        policy.version,
        policy.updates,
        policy.decisions,
    )
    assert again.params == policy.params
    assert policy.drift and again.drift == pytest.approx(policy.drift, abs=1e-6)
    assert list(again.learned_uids) == list(policy.learned_uids)
    assert not again.observe(outcome("u3", w, SLOW, 5.0))


def test_spreads_survive_and_a_state_from_before_them_loads_as_unknown():
    policy = trained()
    cells = [c for row in policy.workloads.values() for c in row.values()]
    again = qstate.loads(qstate.dumps(policy))
    kept = [c for row in again.workloads.values() for c in row.values()]
    assert any(c.spread > 0 for c in cells)
    assert [c.spread for c in kept] == pytest.approx([c.spread for c in cells], abs=1e-6)
    doc = qstate.to_document(policy)
    for table in ("workloads", "models"):  # as written before the spread was kept
        doc["q"][table] = {k: v[:4] for k, v in doc["q"][table].items()}
    doc["checksum"] = qstate._checksum({k: v for k, v in doc.items() if k != "checksum"})
    old = qstate.from_document(doc)
    olds = [c for row in old.workloads.values() for c in row.values()]
    assert olds and all(math.isnan(c.spread) and not c.measured() for c in olds)
    assert "nan" not in qstate.dumps(old).lower()  # unknown is left out, never written as NaN


def test_parameters_of_a_newer_release_are_ignored():
    doc = qstate.to_document(trained())
    doc["params"]["a_knob_from_a_newer_release"] = 1.0
    doc["checksum"] = qstate._checksum({k: v for k, v in doc.items() if k != "checksum"})
    assert qstate.from_document(doc).params == trained().params


def test_tampering_is_detected():
    doc = qstate.to_document(trained())
    doc["q"]["workloads"] = {k: [9.0, 1, 1.0] for k in doc["q"]["workloads"]}
    with pytest.raises(qstate.ChecksumError, match="checksum"):
        qstate.from_document(doc)


@pytest.mark.parametrize("doc", [{"schema": "megagpu.q-state/v2"}, {}, [], "text"])
def test_wrong_schema_is_a_typed_error(doc):
    with pytest.raises(qstate.SchemaError, match="schema"):
        qstate.from_document(doc)


def test_not_json_is_a_schema_error():
    with pytest.raises(qstate.SchemaError, match="not JSON"):
        qstate.loads("{nope")


def test_size_for_1000_nodes_and_50_model_classes():
    policy = qpolicy.QPolicy(qpolicy.Params(replay_batch=1))
    nodes = [
        node(f"n{i}", f"dev{i % 10}", devices=8, fp16=10.0 + i % 10, backends=("cuda", "vulkan"))
        for i in range(1000)
    ]
    rng = random.Random(0)
    count = 0
    for m in range(50):
        for gpus in (1, 2, 4, 8):
            w = workload(model_name=f"model-{m}", gpus=gpus, work=100.0)
            v = view(nodes, w)
            for _ in range(3):
                row = policy.choose(w, v, rng).row
                n = v.node_of(row)
                policy.observe(outcome(f"uid-{count:032d}", w, n, 1.0 + rng.random()))
                count += 1
    text = qstate.dumps(policy)
    assert len(text.encode()) < 512 * 1024
    assert len(json.loads(text)["learned_uids"]) == min(count, qpolicy.LEARNED_UIDS)
