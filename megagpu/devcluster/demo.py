"""The demo's cluster side: waves of example GpuWorkloads through the real loop, as data."""

from __future__ import annotations

import copy
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from kubernetes import client

from megagpu.core import qpolicy
from megagpu.kube import names
from megagpu.sim import simulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workloads"
WORK = {
    "inference": {"amount": 200000, "unit": "tokens"},
    "training": {"amount": 20000, "unit": "steps"},
    "fineTuning": {"amount": 3000, "unit": "steps"},
    "embedding": {"amount": 3, "unit": "batches"},
    "batchInference": {"amount": 20000, "unit": "tokens"},
}
"""``spec.work`` declared per type where an example has none: minutes to a few hours on the dev
cluster's devices (the simulated runtime also reports it, as a container would)."""


class Wave(NamedTuple):
    """What one wave of workloads did."""

    index: int
    succeeded: int
    failed: int
    reward_mean: float
    modes: dict[str, int]
    by_type: dict[str, dict[str, int]]
    """Workload type -> backend -> count."""
    seconds: float


def examples() -> list[dict[str, Any]]:
    """The example GpuWorkloads of ``examples/workloads``."""
    return [yaml.safe_load(p.read_text()) for p in sorted(EXAMPLES.glob("*.yaml"))]


def run_wave(
    api: client.ApiClient, namespace: str, index: int, copies: int, timeout_s: float = 180
) -> Wave:
    """Apply ``copies`` of every example, wait until all are terminal, and summarize."""
    custom = client.CustomObjectsApi(api)
    made = []
    start = time.monotonic()
    for n in range(copies):
        for example in examples():
            body = copy.deepcopy(example)
            body["metadata"] = {"name": f"{example['metadata']['name']}-w{index}-{n}"}
            body["spec"].setdefault("work", WORK[body["spec"]["workloadType"]])
            custom.create_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.GPUWORKLOADS, body
            )
            made.append(body["metadata"]["name"])
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(made) and time.monotonic() - start < timeout_s:
        for name in made:
            if name in done:
                continue
            gw = custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.GPUWORKLOADS, name
            )
            if (gw.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                done[name] = gw
        time.sleep(0.5)
    statuses = [gw.get("status") or {} for gw in done.values()]
    rewards = [s["reward"] for s in statuses if isinstance(s.get("reward"), int | float)]
    modes = Counter((s.get("decision") or {}).get("mode", "?") for s in statuses)
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    for gw in done.values():
        by_type[gw["spec"]["workloadType"]][(gw.get("status") or {}).get("backend") or "?"] += 1
    return Wave(
        index,
        sum(s.get("phase") == "Succeeded" for s in statuses),
        sum(s.get("phase") == "Failed" for s in statuses),
        sum(rewards) / len(rewards) if rewards else 0.0,
        dict(modes),
        {k: dict(v) for k, v in sorted(by_type.items())},
        time.monotonic() - start,
    )


def reward_trend(scenario: simulator.Scenario) -> list[tuple[int, float, float, int]]:
    """Learning curve of the learned policy from cold start, at each tenth of the run.

    Each mark is (jobs done, mean of the last 100 rewards, epsilon, policy version).
    """
    policy = qpolicy.QPolicy()
    marks: list[tuple[int, float, float, int]] = []

    def progress(done: int, total: int) -> None:
        if done % max(total // 10, 1) == 0:
            recent = list(policy.recent_rewards)
            mean = sum(recent) / len(recent) if recent else 0.0
            marks.append((done, mean, policy.epsilon, policy.version))

    simulator.simulate(scenario, lambda _: policy, 0, progress=progress)
    return marks
