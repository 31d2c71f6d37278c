import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from megagpu.extender import protocol

names = st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1), max_size=30)


@given(names, st.data())
def test_host_priorities_encode_any_names_as_the_json_list(hosts, data):
    scores = data.draw(st.lists(st.integers(0, 10), min_size=len(hosts), max_size=len(hosts)))
    encoded = protocol.HostPriorities(protocol.host_prefixes(hosts), np.asarray(scores, int))
    expected = [{"Host": h, "Score": s} for h, s in zip(hosts, scores, strict=True)]
    assert json.loads(encoded.to_json()) == expected
    assert encoded.as_list() == expected


def test_no_priorities_is_an_empty_list():
    assert protocol.NO_PRIORITIES.to_json() == b"[]"
