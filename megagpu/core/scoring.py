"""Extender scores: the chosen node 10, the others 0-9 by value; clamped and tie-stable."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

MAX_SCORE = 10


def scores(values: np.ndarray, chosen: int) -> np.ndarray:
    """Scores for a value vector: index ``chosen`` gets 10, the others 0..9 scaled by value.

    Non-finite values score 0. Equal values get equal scores, so the result is stable.
    """
    values = np.asarray(values, dtype=float)
    if not 0 <= chosen < len(values):
        raise IndexError(f"chosen index {chosen} is outside 0..{len(values) - 1}")
    others = np.ones(len(values), dtype=bool)
    others[chosen] = False
    finite = np.isfinite(values)
    pool = values[others & finite]
    out = np.zeros(len(values), dtype=np.int64)
    if len(pool):
        # halves keep the differences finite even for values near the float maximum
        lo, hi = pool.min() / 2, pool.max() / 2
        if hi == lo:
            scaled = np.full(len(values), MAX_SCORE - 1.0)
        else:
            with np.errstate(invalid="ignore"):
                scaled = (MAX_SCORE - 1) * ((values / 2 - lo) / (hi - lo))
        out[finite] = np.clip(np.rint(scaled[finite]), 0, MAX_SCORE - 1)
    out[chosen] = MAX_SCORE
    return out


def node_scores(values: Mapping[str, float], chosen: str) -> dict[str, int]:
    """Scores by node name (see ``scores``)."""
    if chosen not in values:
        raise KeyError(f"chosen node {chosen!r} is not among the scored nodes")
    names = list(values)
    result = scores(np.fromiter(values.values(), float, len(names)), names.index(chosen))
    return dict(zip(names, (int(s) for s in result), strict=True))
