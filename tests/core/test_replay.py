import random

import pytest

from megagpu.core import replay


def item(i: int) -> replay.Transition:
    return replay.Transition(f"w{i}", "m", "a", 0, float(i), True, False)


def test_ring_buffer_overwrites_oldest_first():
    buf = replay.ReplayBuffer(3)
    for i in range(5):
        buf.add(item(i))
    assert [t.throughput for t in buf.items()] == [2.0, 3.0, 4.0]


def test_sampling_is_uniform_not_newest():
    buf = replay.ReplayBuffer(100)
    for i in range(100):
        buf.add(item(i))
    draws = [t.throughput for t in buf.sample(20000, random.Random(1))]
    old = sum(1 for d in draws if d < 50) / len(draws)
    assert 0.46 < old < 0.54


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity"):
        replay.ReplayBuffer(0)
