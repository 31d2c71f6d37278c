import random

import pytest

from megagpu.core import baselines, ports
from tests.helpers import node, view, workload

A = node("a-0", "slowdev", devices=4, fp16=50.0, gbps=500.0)
B = node("b-0", "fastdev", devices=4, fp16=400.0, gbps=3000.0)
C = node("c-0", "middev", devices=8, fp16=100.0, gbps=1000.0)
NODES = [A, B, C]
FREE = [4, 1, 2]  # shares: 1.0, 0.25, 0.25


def pick(policy: ports.Policy, free: list[int] = FREE, seed: int = 0) -> str:
    w = workload()
    v = view(NODES, w, free=free)
    return v.node_of(policy.choose(w, v, random.Random(seed)).row).name


def test_protocol_conformance():
    for name in baselines.BASELINES:
        _: ports.Policy = baselines.make_baseline(name)
    _o: ports.Policy = baselines.OracleGreedyPolicy(lambda w, r: 1.0)


def test_least_allocated_spreads_to_the_emptiest_node():
    assert pick(baselines.LeastAllocatedPolicy()) == "a-0"


def test_most_allocated_packs_the_fullest_node():
    assert pick(baselines.MostAllocatedPolicy()) == "b-0"


def test_fastest_device_follows_benchmarks():
    assert pick(baselines.FastestDevicePolicy()) == "b-0"


def test_oracle_follows_true_throughput_not_benchmarks():
    truth = {0: 9.0, 1: 2.0, 2: 3.0}
    assert pick(baselines.OracleGreedyPolicy(lambda w, row: truth[row])) == "a-0"


def test_round_robin_cycles_through_nodes():
    policy = baselines.RoundRobinPolicy()
    assert [pick(policy) for _ in range(4)] == ["a-0", "b-0", "c-0", "a-0"]


def test_random_uses_every_node_and_is_seeded():
    seen = {pick(baselines.RandomPolicy(), seed=s) for s in range(30)}
    assert seen == {"a-0", "b-0", "c-0"}
    assert pick(baselines.RandomPolicy(), seed=7) == pick(baselines.RandomPolicy(), seed=7)


def test_unknown_baseline_names_the_choices():
    with pytest.raises(ValueError, match="least_allocated"):
        baselines.make_baseline("fifo")


def test_no_candidates_is_a_typed_error():
    with pytest.raises(ports.NoCandidatesError):
        pick(baselines.LeastAllocatedPolicy(), free=[0, 0, 0])
