"""From pods to outcomes and learning updates: one compare-and-swap per outcome (DESIGN 4, 9.4)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from typing import Any, NamedTuple

from megagpu.core import fleet, model, qpolicy, reward, work
from megagpu.core import replay as replay_mod
from megagpu.kube import convert, names, qstore

LOG = logging.getLogger("megagpu.operator")
MAX_TRIES = 8


class Terminal(NamedTuple):
    """How an attempt's pod ended."""

    succeeded: bool
    reason: str
    started: dt.datetime | None
    finished: dt.datetime | None

    @property
    def duration_s(self) -> float | None:
        """Run time, when both ends are known."""
        if self.started is None or self.finished is None:
            return None
        return max((self.finished - self.started).total_seconds(), 0.0)


def terminal(pod: dict[str, Any]) -> Terminal | None:
    """The end of a Succeeded or Failed pod, else None."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase not in ("Succeeded", "Failed"):
        return None
    ended = [
        ((c.get("state") or {}).get("terminated") or {})
        for c in status.get("containerStatuses") or []
    ]
    ended = [t for t in ended if t]
    started = min(
        (t for t in (convert.parse_time(e.get("startedAt")) for e in ended) if t), default=None
    )
    finished = max(
        (t for t in (convert.parse_time(e.get("finishedAt")) for e in ended) if t), default=None
    )
    started = started or convert.parse_time(status.get("startTime"))
    codes = [e.get("exitCode") for e in ended if e.get("exitCode")]
    reason = status.get("reason") or next((e.get("reason") for e in ended if e.get("reason")), None)
    if phase == "Failed" and not reason:
        reason = f"ExitCode{codes[0]}" if codes else "Failed"
    return Terminal(phase == "Succeeded", reason or "Completed", started, finished)


def decision(pod: dict[str, Any]) -> dict[str, Any]:
    """The decision bind recorded on the pod, or mode fallback when the extender was down."""
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(names.ANN_DECISION)
    if text:
        try:
            found = json.loads(text)
            if isinstance(found, dict):
                return found
        except ValueError:
            pass
    return {
        "mode": "fallback",
        "score": 0,
        "qValues": {},
        "alternatives": [],
        "policyVersion": 0,
        "reason": "bound without the extender (it was down or skipped)",
        "predictedSeconds": None,
        "predictedSigma": None,
    }


def size_of(pod: dict[str, Any]) -> work.Size:
    """The size a finished pod's outcome is learned with: reported, declared or none."""
    try:
        declared = convert.workload_from_pod(pod).declared
    except convert.ConvertError as e:
        return work.Size(None, "none", f"{e}; learned without a size")
    return work.resolve(declared, convert.work_report(pod))


def outcome_of(
    pod: dict[str, Any],
    end: Terminal,
    node: model.Node | None,
    deadline_s: float | None,
    created: dt.datetime | None,
    size: work.Size | None = None,
) -> model.Outcome | None:
    """The learning input of a finished pod (None when it never ran on a known node).

    ``size``: ``size_of(pod)`` when the caller has it already.
    """
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if node is None:
        return None
    try:
        workload = convert.workload_from_pod(pod)
    except convert.ConvertError:
        return None
    size = size or size_of(pod)
    duration = end.duration_s or 0.0
    missed = bool(
        deadline_s
        and created
        and end.finished
        and (end.finished - created).total_seconds() > deadline_s
    )
    backend = annotations.get(names.ANN_ASSIGNED_BACKEND) or node.backends[0]
    return model.Outcome(
        uid=str(meta.get("uid")),
        workload=workload,
        node=node.name,
        backend=backend,
        device_class=node.device_class,
        duration_s=duration,
        # A success is a success even when it started and ended within one second (the
        # kubelet's timestamps have 1 s resolution): measured 0 s, it is no speed (not sized).
        succeeded=end.succeeded,
        deadline_missed=missed,
        work=size.work.amount if size.work else None,
        work_source=size.source,
    )


class Learned(NamedTuple):
    """What one learning step did."""

    reward: float
    policy: qpolicy.QPolicy
    new: bool
    """False when this outcome had been learned before (nothing changed)."""


def learn(
    store: qstore.Store,
    outcome: model.Outcome,
    nodes: list[model.Node],
    on_bad_state: Any = None,
    decided: bool = True,
) -> Learned:
    """Learn ``outcome`` exactly once: load, observe, compare-and-swap; retry on conflict.

    The first try starts from the store's last known state (no read when it has one); a
    conflict reads the current state and tries again.

    ``decided``: the placement came from the extender (it counts as a decision, so epsilon
    decays in the stored state that the extender reloads).
    """
    for attempt in range(MAX_TRIES):
        loaded = store.load(cached=attempt == 0)  # a conflict means: read it again
        if loaded.error and on_bad_state is not None:
            on_bad_state(loaded.error)
        policy = loaded.policy or qpolicy.QPolicy()
        if loaded.policy is None and loaded.resource_version is not None:
            # the stored state was unusable: start from priors, but versions only grow
            policy.version = max((v for v, _ in store.history()), default=0)
        if nodes:
            policy.know(fleet.Fleet.build(nodes))
        if outcome.uid in policy.learned_uids:
            return Learned(recompute(policy, outcome), policy, False)
        if decided:
            policy.decisions += 1
        policy.observe(outcome)
        value = policy.recent_rewards[-1]
        try:
            store.save(policy, loaded.resource_version)
        except qstore.Conflict:
            continue
        return Learned(value, policy, True)
    raise RuntimeError(f"could not save the Q-state after {MAX_TRIES} conflicts")


def recompute(policy: qpolicy.QPolicy, outcome: model.Outcome) -> float:
    """The reward of an outcome against the policy's current best known throughput."""
    return policy.reward_of(outcome)


def params_from_spec(spec: dict[str, Any], current: qpolicy.Params) -> qpolicy.Params:
    """Q-policy parameters from a GpuSchedulingPolicy spec (absent fields keep their values)."""
    eps, replay_, weights = (spec.get(k) or {} for k in ("epsilon", "replay", "rewardWeights"))
    rewards = reward.RewardWeights(
        failure_penalty=float(weights.get("failurePenalty", current.rewards.failure_penalty)),
        deadline_penalty=float(weights.get("deadlinePenalty", current.rewards.deadline_penalty)),
        floor=current.rewards.floor,
        ceiling=current.rewards.ceiling,
    )
    return dataclasses.replace(
        current,
        mode=spec.get("mode", current.mode),
        baseline=spec.get("baseline", current.baseline),
        learning_rate=float(spec.get("learningRate", current.learning_rate)),
        discount=float(spec.get("discount", current.discount)),
        epsilon_start=float(eps.get("start", current.epsilon_start)),
        epsilon_min=float(eps.get("min", current.epsilon_min)),
        epsilon_decay=float(eps.get("decay", current.epsilon_decay)),
        ucb_bonus=float(spec.get("ucbBonus", current.ucb_bonus)),
        replay_capacity=int(replay_.get("capacity", current.replay_capacity)),
        replay_batch=int(replay_.get("batch", current.replay_batch)),
        rewards=rewards,
    )


def apply_spec(store: qstore.Store, spec: dict[str, Any]) -> qpolicy.QPolicy:
    """Make the stored Q-state follow the GpuSchedulingPolicy spec (one compare-and-swap)."""
    for _ in range(MAX_TRIES):
        loaded = store.load()
        policy = loaded.policy or qpolicy.QPolicy()
        params = params_from_spec(spec, policy.params)
        if params == policy.params and loaded.policy is not None:
            return policy
        if params.replay_capacity != policy.params.replay_capacity:
            kept = policy.replay.items()
            policy.replay = replay_mod.ReplayBuffer(params.replay_capacity)
            for item in kept[-params.replay_capacity :]:
                policy.replay.add(item)
        policy.params = params
        policy.version += 1
        try:
            store.save(policy, loaded.resource_version)
        except qstore.Conflict:
            continue
        return policy
    raise RuntimeError(f"could not save the Q-state after {MAX_TRIES} conflicts")
