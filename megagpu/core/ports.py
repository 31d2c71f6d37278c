"""Seams between the parts: the policy protocol every scheduler implements."""

from __future__ import annotations

import random
from typing import NamedTuple, Protocol

import numpy as np

from megagpu.core import fleet, model


class Choice(NamedTuple):
    """A policy's pick among the candidate rows of a view."""

    row: int
    """The chosen fleet row."""
    mode: str
    """exploit, explore or forced."""
    values: np.ndarray
    """The policy's value of every candidate row (same order as ``view.rows``); higher is
    better (the simulator's earliest-finish placements give minus the predicted seconds)."""
    learned_row: int = -1
    """Shadow mode: the row the learned policy would have chosen."""
    regret: float = 0.0
    """Shadow mode: estimated value lost by following the baseline."""
    wait: bool = False
    """Keep the workload pending for the busy row ``row`` (only when ``view.wait_left_s > 0``)."""
    prediction: model.Prediction | None = None
    """Predicted run time on ``row``, when the policy has one."""
    start_s: float | None = None
    """A wait's predicted start on ``row`` (when its node frees)."""
    reason: str = ""
    """Why, in words (a wait's reason names the nodes and predicted finishes)."""


class Policy(Protocol):
    """A scheduler: picks a candidate row and may learn from outcomes.

    A policy that may keep a workload pending (``Choice.wait``) says so with a class attribute
    ``waits = True``; only then does the simulator fill the view's busy rows and running jobs.
    """

    name: str

    def choose(self, workload: model.Workload, view: fleet.View, rng: random.Random) -> Choice:
        """Pick one of ``view.rows`` for ``workload``."""
        ...

    def observe(self, outcome: model.Outcome) -> bool:
        """Learn from ``outcome``; False when it was already learned (or nothing is learned)."""
        ...


class NoCandidatesError(ValueError):
    """A policy was asked to choose among no candidates."""


class WaitError(ValueError):
    """A policy kept a workload pending where it had to be placed (its wait bound had passed)."""
