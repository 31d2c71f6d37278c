"""Every key binding and view, driven headless with Pilot over a frozen simulation."""

from __future__ import annotations

from textual.widgets import ContentSwitcher, Static

from megagpu.tui.app import THEMES, MegagpuApp
from megagpu.tui.command_bar import CommandBar
from megagpu.tui.detail_screen import DetailScreen
from megagpu.tui.help_screen import HelpScreen
from megagpu.tui.source import Health, Objects
from megagpu.tui.status_bar import StatusBar
from megagpu.tui.synced_table import SyncedTable
from tests.tui.conftest import StaticSource, settle


def table(app: MegagpuApp, panel: str) -> SyncedTable:
    return app.query_one(f"#{panel}").query_one(SyncedTable)


async def test_first_frame_shows_every_device_the_agent_and_the_status(sim):
    app = MegagpuApp(sim)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        snapshot = app.snapshot
        assert snapshot is not None and sim.version() == app._seen[0]
        assert table(app, "gpus").row_count == len(snapshot.devices) == 54
        summary = str(app.query_one("#agent-summary", Static).render())
        assert f"decisions {snapshot.agent.decisions}" in summary
        assert table(app, "agent").row_count == len(snapshot.decisions) > 0
        status = str(app.query_one(StatusBar).render())
        assert "LIVE" in status and "simulation dev.yaml" in status and "connected" in status


async def test_number_keys_and_escape_switch_views(sim):
    app = MegagpuApp(sim)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        switcher = app.query_one(ContentSwitcher)
        await pilot.press("2")
        assert switcher.current == "workloads"
        assert table(app, "workloads").row_count == len(app.snapshot.workloads)
        await pilot.press("3")
        assert switcher.current == "nodes" and table(app, "nodes").row_count == 13
        await pilot.press("escape")
        assert switcher.current == "dashboard"


async def test_colon_commands_jump_like_k9s_and_unknown_ones_say_so(sim):
    app = MegagpuApp(sim)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        switcher = app.query_one(ContentSwitcher)
        for command, view in (("gw", "workloads"), ("nodes", "nodes"), ("policy", "dashboard")):
            await pilot.press("colon", *command, "enter")
            assert switcher.current == view, command
            assert not app.query_one(CommandBar).visible
        await pilot.press("colon", *"bogus", "enter")
        await pilot.pause()
        assert any("unknown command 'bogus'" in n.message for n in app._notifications)
        await pilot.press("colon", "q", "enter")
        await pilot.pause()
    assert app.return_code == 0


async def test_slash_filters_as_you_type_and_escape_clears(sim):
    app = MegagpuApp(sim)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"h100-0")
        assert app.filter_text == "h100-0"
        assert table(app, "gpus").row_count == 8
        await pilot.press("enter")
        await pilot.press("2")
        shown = table(app, "workloads").row_count
        assert 0 < shown < len(app.snapshot.workloads)
        assert "filter /h100-0" in str(app.query_one(StatusBar).render())
        await pilot.press("escape")
        assert app.filter_text == ""
        assert table(app, "workloads").row_count == len(app.snapshot.workloads)


async def test_enter_opens_the_detail_with_the_decision_and_escape_goes_back(sim):
    app = MegagpuApp(sim)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2", "s", "S")  # by namespace, then reversed: any placed row will do
        await pilot.press("3", "2")
        workloads = table(app, "workloads")
        placed = next(w for w in app.snapshot.workloads if w.mode != "-")
        workloads.move_cursor(row=workloads.get_row_index(placed.key))
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        text = str(app.screen.query_one("#detail-text", Static).render())
        assert f"placed on {placed.node}" in text and "instead" in text and "score" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


async def test_pause_stops_following_and_resume_catches_up(sim):
    app = MegagpuApp(sim, refresh_s=0.05)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        before = app.snapshot
        await pilot.press("p")
        assert "PAUSED" in str(app.query_one(StatusBar).render())
        sim._at = 3000.0
        await pilot.pause(0.3)
        await settle(pilot)
        assert app.snapshot is before
        await pilot.press("p")
        await settle(pilot)
        assert app.snapshot is not before
        assert len(app.snapshot.workloads) > len(before.workloads)


async def test_t_cycles_themes_and_h_shows_help(sim):
    app = MegagpuApp(sim)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        seen, backgrounds = set(), set()
        for _ in THEMES:
            await pilot.press("t")
            await pilot.pause()
            seen.add(app.theme)
            # the tables' cached line styles follow the theme
            backgrounds.add(table(app, "gpus")._line_styles()[0].bgcolor)
        assert seen == set(THEMES)
        assert len(backgrounds) == len(THEMES)
        await pilot.press("h")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_s_sorts_by_the_next_column_and_shift_s_reverses(sim):
    app = MegagpuApp(sim)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        workloads = table(app, "workloads")
        assert workloads.sort_column == "age"
        await pilot.press("s")
        assert workloads.sort_column == "namespace"
        await pilot.press("s", "s")  # name, then type
        first = [workloads.get_row_at(i)[2].plain.lower() for i in range(3)]
        await pilot.press("S")
        assert workloads.sort_reverse
        last = [workloads.get_row_at(i)[2].plain.lower() for i in range(3)]
        assert first == sorted(first) and last == sorted(last, reverse=True)


async def test_80x24_stacks_the_dashboard_and_keeps_both_panels(sim):
    app = MegagpuApp(sim)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.screen.has_class("-narrow")
        gpus, agent = app.query_one("#gpus").region, app.query_one("#agent").region
        assert gpus.height >= 3 and agent.height >= 3
        assert agent.y >= gpus.bottom and gpus.width == agent.width == 80


def _objects() -> Objects:
    return Objects(0.0, [], [], [], None, [])


async def test_unreachable_cluster_shows_a_banner_and_forbidden_panels_say_which_permission():
    health = Health(
        "unreachable: https://127.0.0.1:1 (retrying)",
        {"gpus": "forbidden: this account may not list and watch gpunodes"},
    )
    source = StaticSource(_objects(), health)
    app = MegagpuApp(source)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        banner = app.query_one("#banner", Static)
        assert banner.display and "Cannot reach the cluster" in str(banner.render())
        problem = app.query_one("#gpus").query_one(".problem", Static)
        assert problem.display and "gpunodes" in str(problem.render())
        assert not app.query_one("#workloads").query_one(".problem", Static).display
        assert "no policy status yet" in str(app.query_one("#agent-summary", Static).render())
        assert source.started
        source.health_ = Health("connected")
        source.version_ = 2
        await pilot.pause(1.2)
        await settle(pilot)
        assert not banner.display and not problem.display
    assert source.stopped


async def test_q_quits(sim):
    app = MegagpuApp(sim)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0 and not app.is_running
