"""Run several policies over the same arrivals and seeds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from megagpu.core import baselines, learned, ports, qpolicy, waiting
from megagpu.sim import evaluation, simulator

POLICIES = (
    *baselines.BASELINES,
    "oracle_greedy",
    "earliest_finish",
    "learned_nowait",
    "learned",
)


def factory(
    name: str, params: qpolicy.Params | None = None, settings: waiting.Settings | None = None
) -> simulator.PolicyFactory:
    """A policy factory by name (the learned ones take Q-policy and waiting settings)."""
    if name == "oracle_greedy":
        return baselines.OracleGreedyPolicy
    if name == "earliest_finish":
        return baselines.EarliestFinishPolicy
    if name in ("learned", "learned_nowait"):
        waits = name == "learned"
        return lambda _: learned.LearnedPolicy(qpolicy.QPolicy(params), settings, waits=waits)
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)} or all")
    return lambda _: baselines.make_baseline(name)


def parse_policies(text: str) -> list[str]:
    """``all`` or a comma list; oracle_greedy is always run (the 10% metric needs it)."""
    names = list(POLICIES) if text == "all" else [p.strip() for p in text.split(",") if p.strip()]
    for name in names:
        factory(name)
    return names


def run(
    build: Callable[[int], simulator.Scenario],
    policies: Sequence[str],
    seeds: Sequence[int],
    *,
    progress: Callable[[str, int], None] | None = None,
) -> list[tuple[str, int, dict[str, Any]]]:
    """(policy, seed, metrics) for every policy and seed; each seed's scenario is shared."""
    results = []
    for seed in seeds:
        scenario = build(seed)
        oracle = simulator.simulate(scenario, factory("oracle_greedy"), seed)
        for name in policies:
            result = (
                oracle
                if name == "oracle_greedy"
                else simulator.simulate(scenario, factory(name), seed)
            )
            results.append((name, seed, evaluation.metrics(result, oracle)))
            if progress is not None:
                progress(name, seed)
    return results


_: ports.Policy = qpolicy.QPolicy()
_w: ports.Policy = learned.LearnedPolicy()
