"""Snapshot tests (pytest-textual-snapshot) of every view over a frozen simulation."""

from __future__ import annotations

import pytest

from tests.tui.conftest import frozen_app, settle

WIDE, SMALL = (140, 40), (80, 24)


def _keys(*keys: str):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press(*keys)
        await settle(pilot)

    return run_before


@pytest.mark.parametrize(
    ("keys", "size"),
    [
        pytest.param((), WIDE, id="dashboard"),
        pytest.param(("2",), WIDE, id="workloads"),
        pytest.param(("3",), WIDE, id="nodes"),
        pytest.param(("2", "enter"), WIDE, id="detail"),
        pytest.param(("h",), WIDE, id="help"),
        pytest.param(("slash", *"mi210", "enter"), WIDE, id="filtered"),
        pytest.param((), SMALL, id="dashboard-80x24"),
        pytest.param(("2",), SMALL, id="workloads-80x24"),
    ],
)
def test_view_snapshot(snap_compare, keys, size):
    assert snap_compare(frozen_app(), run_before=_keys(*keys), terminal_size=size)
