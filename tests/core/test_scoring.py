import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from megagpu.core import scoring

values = st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.floats(allow_nan=True, allow_infinity=True),
    min_size=1,
    max_size=30,
)


@given(values, st.data())
def test_scores_are_clamped_and_chosen_is_unique_max(vals, data):
    chosen = data.draw(st.sampled_from(sorted(vals)))
    scores = scoring.node_scores(vals, chosen)
    assert set(scores) == set(vals)
    assert scores[chosen] == 10
    assert all(isinstance(s, int) and 0 <= s <= 9 for n, s in scores.items() if n != chosen)


@given(values, st.data())
def test_scores_are_monotone_in_value(vals, data):
    chosen = data.draw(st.sampled_from(sorted(vals)))
    scores = scoring.node_scores(vals, chosen)
    finite = [(v, scores[n]) for n, v in vals.items() if n != chosen and math.isfinite(v)]
    for v1, s1 in finite:
        for v2, s2 in finite:
            if v1 < v2:
                assert s1 <= s2


@given(
    st.lists(st.text(min_size=1, max_size=4), min_size=2, max_size=20, unique=True),
    st.floats(-5, 5),
)
def test_equal_values_give_equal_scores(nodes, value):
    scores = scoring.node_scores({n: value for n in nodes}, nodes[0])
    assert {scores[n] for n in nodes[1:]} == {9}


def test_unknown_chosen_node_is_an_error():
    with pytest.raises(KeyError, match="not among"):
        scoring.node_scores({"a": 1.0}, "b")
