"""Reward of an outcome: log speed relative to the best known placement, with penalties."""

from __future__ import annotations

import math
from dataclasses import dataclass

from megagpu.core import model


@dataclass(frozen=True)
class RewardWeights:
    """How outcomes are scored."""

    failure_penalty: float = 3.0
    """Reward of a failed attempt (negated); about the log of a 20x slowdown."""
    deadline_penalty: float = 1.0
    """Subtracted when the deadline was missed; a soft deadline costs like a 2.7x slowdown."""
    floor: float = -3.0
    """Lowest reward of a successful run, so one pathological run cannot dominate the mean."""
    ceiling: float = 0.7
    """Highest reward (about log 2): a run far faster than the best known is more likely
    mis-sized than real, so it counts as at most twice as fast."""

    def __post_init__(self) -> None:
        model.check_finite("reward.failure_penalty", self.failure_penalty)
        model.check_finite("reward.deadline_penalty", self.deadline_penalty)
        model.check_finite("reward.floor", self.floor, minimum=None)
        model.check_finite("reward.ceiling", self.ceiling)


def reward(
    throughput: float,
    reference_throughput: float,
    *,
    succeeded: bool,
    deadline_missed: bool,
    weights: RewardWeights,
) -> float:
    """``log(throughput / reference)`` within [floor, ceiling] (0 at the best known), penalised."""
    if not succeeded or throughput <= 0 or reference_throughput <= 0:
        return -weights.failure_penalty
    value = min(max(math.log(throughput / reference_throughput), weights.floor), weights.ceiling)
    if deadline_missed:
        value -= weights.deadline_penalty
    return value
