"""The extender's Prometheus metrics, in an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


class Metrics:
    """Requests, latency per verb, decisions, errors, cache failures, the policy version."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "megagpu_extender_requests",
            "Extender requests by verb.",
            ["verb"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "megagpu_extender_request_duration_seconds",
            "Time to answer an extender request.",
            ["verb"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "megagpu_extender_decisions",
            "Bound placements by mode and backend.",
            ["mode", "backend"],
            registry=self.registry,
        )
        self.errors = Counter(
            "megagpu_extender_errors",
            "Requests answered with an error, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.informer_failures = Counter(
            "megagpu_extender_informer_failures",
            "Unexpected failures of a watch cache (readiness is false until it lists again).",
            ["informer"],
            registry=self.registry,
        )
        self.policy_version = Gauge(
            "megagpu_extender_policy_version",
            "Version of the Q-state in use.",
            registry=self.registry,
        )
