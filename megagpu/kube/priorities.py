"""PriorityClasses of megagpu workloads: one per priority, and one per queue size bucket in it.

kube-scheduler takes pending pods by priority, then by age. With ``--queue-by-size`` the operator
gives each pod the class of its priority and of its predicted run time (``predict.queue_bucket``),
so that within one priority shorter jobs go first: in the simulator this takes learned's average
JCT at load 0.7 from 0.74 to 0.52 x oracle_greedy's, and its p99 from 0.74 to 0.93 x: nothing
ages a waiting pod (benchmarks/results/sim-queue-order.md, 2026-12-06 20:16 UTC). Bands stay
apart (a bucket moves its priority's value by at most 40 of 1,000); the middle bucket, where a
pod with no prediction goes, has the plain class's value; no class preempts. Values cannot
change once released (a PriorityClass's value is immutable): ``STEP`` and the buckets are fixed
from then on.
"""

from __future__ import annotations

from typing import Any

from megagpu.core import model, predict
from megagpu.kube import names

STEP = 10
"""Priority value between neighbouring size buckets."""


def value(priority: str, bucket: int | None = None) -> int:
    """The class value: 1,000 per priority, moved by the bucket (shortest highest, middle 0)."""
    base = 1000 * (model.PRIORITIES.index(priority) + 1)
    return base if bucket is None else base + STEP * (int(predict.UNKNOWN_BUCKET) - bucket)


def class_name(priority: str, bucket: int | None = None) -> str:
    """``megagpu-<priority>``, or ``megagpu-<priority>-q<bucket>``."""
    plain = names.PRIORITY_CLASS.format(priority=priority)
    return plain if bucket is None else f"{plain}-q{bucket}"


def manifests() -> list[dict[str, Any]]:
    """Every class, as the chart renders them (``priorityClasses.preemption`` off)."""
    out = []
    for priority in model.PRIORITIES:
        for bucket in (None, *range(predict.QUEUE_BUCKETS)):
            size = "" if bucket is None else f", queue size bucket {bucket}"
            out.append(
                {
                    "apiVersion": "scheduling.k8s.io/v1",
                    "kind": "PriorityClass",
                    "metadata": {
                        "name": class_name(priority, bucket),
                        "labels": {"app.kubernetes.io/part-of": "megagpu"},
                    },
                    "value": value(priority, bucket),
                    "preemptionPolicy": "Never",
                    "description": f"megagpu workloads of priority {priority}{size}.",
                }
            )
    return out
