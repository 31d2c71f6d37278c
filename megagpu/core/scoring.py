"""Extender scores: the chosen node 10, the others 0-9 by value; clamped and tie-stable."""

from __future__ import annotations

import math
from collections.abc import Mapping

MAX_SCORE = 10


def node_scores(values: Mapping[str, float], chosen: str) -> dict[str, int]:
    """Score every node in ``values``: ``chosen`` gets 10, others 0..9 scaled by their value.

    Non-finite values score 0. Equal values get equal scores, so the result is stable.
    """
    if chosen not in values:
        raise KeyError(f"chosen node {chosen!r} is not among the scored nodes")
    others = {n: v for n, v in values.items() if n != chosen}
    finite = [v for v in others.values() if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    scores = {chosen: MAX_SCORE}
    for node, value in others.items():
        if not math.isfinite(value):
            scores[node] = 0
        elif hi == lo:
            scores[node] = MAX_SCORE - 1
        else:
            # halves keep the differences finite even for values near the float maximum
            scaled = round((MAX_SCORE - 1) * ((value / 2 - lo / 2) / (hi / 2 - lo / 2)))
            scores[node] = min(max(int(scaled), 0), MAX_SCORE - 1)
    return scores
