"""PriorityClasses: size buckets order within a priority, never across one (the chart renders
the same classes: tests/e2e/test_chart.py)."""

from __future__ import annotations

from megagpu.core import model, predict
from megagpu.kube import priorities


def test_shorter_buckets_rank_higher_within_a_priority_and_bands_never_overlap():
    for priority in model.PRIORITIES:
        values = [priorities.value(priority, b) for b in range(predict.QUEUE_BUCKETS)]
        assert values == sorted(values, reverse=True) and len(set(values)) == len(values)
    bands = [
        [priorities.value(p, b) for b in (None, *range(predict.QUEUE_BUCKETS))]
        for p in model.PRIORITIES
    ]
    assert all(max(low) < min(high) for low, high in zip(bands, bands[1:], strict=False))
    middle = int(predict.UNKNOWN_BUCKET)
    assert priorities.class_name("normal", middle) == f"megagpu-normal-q{middle}"
    # a pod with no prediction ranks as one made without queue by size (before an upgrade)
    assert priorities.value("normal", middle) == priorities.value("normal")
