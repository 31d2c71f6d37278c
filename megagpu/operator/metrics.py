"""The operator's Prometheus metrics (port 8080): phases, reconcile latency, learning."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PHASES = ("Pending", "Scheduling", "Running", "Succeeded", "Failed")


class _Phases(Collector):
    """GpuWorkloads by phase, counted when scraped from the operator's watch copies."""

    def __init__(self, list_workloads: Callable[[], list[dict[str, Any]]]) -> None:
        self._list = list_workloads

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "megagpu_operator_workloads", "GpuWorkloads by phase.", labels=["phase"]
        )
        tally = Tally((w.get("status") or {}).get("phase") or "Pending" for w in self._list())
        for phase in PHASES:
            family.add_metric([phase], tally.get(phase, 0))
        yield family


class Metrics:
    """Reconcile latency, learning updates, rewards and their average, epsilon (one registry)."""

    def __init__(
        self,
        list_workloads: Callable[[], list[dict[str, Any]]],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.registry.register(_Phases(list_workloads))
        self.reconcile = Histogram(
            "megagpu_operator_reconcile_seconds",
            "Time to handle one change of a workload or its pod.",
            ["handler"],
            registry=self.registry,
        )
        self.updates = Counter(
            "megagpu_operator_learning_updates",
            "Outcomes learned (one compare-and-swap each).",
            registry=self.registry,
        )
        self.reward = Histogram(
            "megagpu_operator_reward",
            "Rewards of learned outcomes.",
            buckets=(-3, -2, -1, -0.5, -0.25, -0.1, 0, 0.1, 0.5),
            registry=self.registry,
        )
        self.reward_ema = Gauge(
            "megagpu_operator_reward_ema",
            "Moving average of learned rewards (0: the best known placement; the histogram has "
            "negative buckets, so it carries no _sum).",
            registry=self.registry,
        )
        self.prediction_error = Histogram(
            "megagpu_operator_prediction_error_ratio",
            "|actual - predicted| / actual run time of finished pods placed with a prediction.",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
            registry=self.registry,
        )
        self.prediction_log_ratio = Histogram(
            "megagpu_operator_prediction_log_ratio",
            "log(actual / predicted) run time (signed: above 0 ran longer than predicted).",
            buckets=(-2.0, -1.0, -0.5, -0.2, -0.1, 0.0, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=self.registry,
        )
        self.epsilon = Gauge(
            "megagpu_operator_epsilon", "Exploration rate of the policy.", registry=self.registry
        )
