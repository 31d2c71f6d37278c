"""The operator's API load stays bounded (the in-process part of make bench-operator)."""

from __future__ import annotations

from benchmarks import operator_api


def test_a_completed_workload_costs_a_bounded_number_of_calls() -> None:
    found = operator_api.calls_per_workload(workloads=60, classes=5, nodes=20)
    assert found["completed"] == 60
    assert found["calls_per_completed_workload"] <= operator_api.CALLS_BOUND, found
    calls = found["by_call"]
    assert "list_node" not in calls  # no list of every node per completion
    assert calls["patch_namespaced_config_map"] <= 1.0  # one compare-and-swap per outcome
    assert calls.get("read_namespaced_config_map", 0) < 0.1  # read again only after a conflict


def test_a_learning_update_writes_less_than_the_document() -> None:
    found = operator_api.bytes_per_update(classes=50, warm=200, measured=20)
    # state.json and one bucket of UIDs (a snapshot at most once a minute), not every UID
    assert found["bytes_per_update"] < 1.1 * found["state_json_bytes"] + 4096, found
    assert found["bytes_per_update"] < found["document_bytes"] / 2, found
