"""What the policy knows of job sizes before a job runs (the work contract, DESIGN 9.10).

A workload's size is its declaration (``spec.work``), corrected by what the reports of its class
said about earlier declarations, else an estimate from the sizes its class reported before.
Both are learned here, in log space, per model key: running means and variances (Welford).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from megagpu.core import model

DECLARED_SIGMA = math.log(2) / math.sqrt(3)
"""Prior spread (std of log) of a declaration's error: the work contract calls x0.5 to x2
ordinary, and a log-uniform error over that range has this standard deviation (0.40)."""
HISTORY_SIGMA = math.log(10)
"""Prior spread of a class's sizes before its reports say otherwise: a factor of 10."""
PRIOR_WEIGHT = 2.0
"""Pseudo-observations of the prior spreads: two reports already move a spread halfway."""
MIN_HISTORY = 3
"""Sizes a class must have reported before its history gives an estimate."""


class Size(NamedTuple):
    """A size the scheduler believes before the run: the median and its spread."""

    amount: float
    """Work units (median estimate)."""
    sigma: float
    """Standard deviation of log(true / amount)."""
    source: str
    """``declared`` or ``history``."""


class Moments:
    """Running count, mean and sum of squared deviations of a series (Welford)."""

    __slots__ = ("n", "mean", "m2")

    def __init__(self, n: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.n, self.mean, self.m2 = n, mean, m2

    def add(self, value: float) -> None:
        """Add one value."""
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)

    def spread(self, prior: float) -> float:
        """Standard deviation, shrunk toward ``prior`` by ``PRIOR_WEIGHT`` pseudo-observations."""
        return math.sqrt((self.m2 + PRIOR_WEIGHT * prior**2) / (self.n + PRIOR_WEIGHT))

    def to_json(self) -> list[float]:
        """[n, mean, m2], rounded."""
        return [self.n, round(self.mean, 6), round(self.m2, 6)]


class History:
    """Per model key: the log sizes reported, and the log errors of declarations."""

    def __init__(self) -> None:
        self.sizes: dict[str, Moments] = {}
        """Model key -> moments of log(size) over outcomes of known size."""
        self.errors: dict[str, Moments] = {}
        """Model key -> moments of log(reported / declared) over reported outcomes."""

    def observe(self, key: str, outcome: model.Outcome) -> None:
        """Learn from the size ``outcome`` was told (nothing when it has none)."""
        if outcome.work is None:
            return
        self.sizes.setdefault(key, Moments()).add(math.log(outcome.work))
        declared = outcome.workload.declared
        if outcome.work_source == "reported" and declared is not None:
            self.errors.setdefault(key, Moments()).add(math.log(outcome.work / declared.amount))

    def size(self, key: str, workload: model.Workload) -> Size | None:
        """The size believed for ``workload``; None with no declaration and no history."""
        if workload.declared is not None:
            errors = self.errors.get(key, Moments())
            bias = errors.n * errors.mean / (errors.n + PRIOR_WEIGHT)
            return Size(
                workload.declared.amount * math.exp(bias), errors.spread(DECLARED_SIGMA), "declared"
            )
        sizes = self.sizes.get(key)
        if sizes is None or sizes.n < MIN_HISTORY:
            return None
        return Size(math.exp(sizes.mean), sizes.spread(HISTORY_SIGMA), "history")

    def small(self, key: str, amount: float, margin: float) -> bool:
        """Whether ``amount`` is at most e**margin times ``key``'s typical size.

        The typical size is of the sizes ``key`` reported or declared; False before
        ``MIN_HISTORY`` of them.
        """
        sizes = self.sizes.get(key)
        if sizes is None or sizes.n < MIN_HISTORY:
            return False
        return math.log(amount) <= sizes.mean + margin

    def to_json(self) -> dict[str, dict[str, list[float]]]:
        """The history as JSON-ready data (part of the Q-state)."""
        return {
            "sizes": {k: m.to_json() for k, m in self.sizes.items()},
            "errors": {k: m.to_json() for k, m in self.errors.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, dict[str, list[float]]]) -> History:
        """Rebuild from ``to_json`` output (an empty history from ``{}``)."""
        history = cls()
        for name, table in (("sizes", history.sizes), ("errors", history.errors)):
            for key, (n, mean, m2) in data.get(name, {}).items():
                table[str(key)] = Moments(int(n), float(mean), float(m2))
        return history
