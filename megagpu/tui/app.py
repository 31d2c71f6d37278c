"""``megagpu tui``: the cluster (or a simulation) at a glance, and the scheduler learning.

Data flows down: a thread worker reads the source when its version changes and sets the
app's ``snapshot``, which every panel has bound. Messages flow up: a panel asks for a
workload's detail, the prompt reports a filter or a command.
"""

from __future__ import annotations

import time

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import ContentSwitcher, Footer, Static
from textual.worker import get_current_worker

from megagpu.kube import explain
from megagpu.tui import driver, idle_gc, rows
from megagpu.tui.agent_panel import AgentPanel
from megagpu.tui.command_bar import CommandBar
from megagpu.tui.detail_screen import DetailScreen
from megagpu.tui.gpu_monitor import GpuMonitor
from megagpu.tui.help_screen import HelpScreen
from megagpu.tui.node_table import NodeTable
from megagpu.tui.panel import Panel
from megagpu.tui.source import Health, Objects, Source
from megagpu.tui.status_bar import StatusBar
from megagpu.tui.synced_table import SyncedTable
from megagpu.tui.workload_table import WorkloadTable

POLL_S = 0.1
"""How often the source's version is checked (cheap; a rebuild waits for the refresh interval)."""
AGE_REFRESH_S = 5.0
"""Rebuild at least this often, so that ages move when nothing else does."""
THEMES = ("textual-dark", "nord", "gruvbox", "textual-light")
COMMANDS = {
    "gw": "workloads",
    "gpuworkload": "workloads",
    "gpuworkloads": "workloads",
    "workloads": "workloads",
    "nodes": "nodes",
    "node": "nodes",
    "no": "nodes",
    "policy": "dashboard",
    "agent": "dashboard",
    "gpus": "dashboard",
    "gpu": "dashboard",
    "dashboard": "dashboard",
}


class MegagpuApp(App[None]):
    """The dashboard over one source."""

    CSS_PATH = "app.tcss"
    AUTO_FOCUS = "SyncedTable"
    TITLE = "megagpu"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("p", "pause", "Pause"),
        Binding("t", "theme", "Theme"),
        Binding("h", "help", "Help"),
        Binding("slash", "prompt('filter')", "Filter"),
        Binding("colon", "prompt('command')", "Command"),
        Binding("1", "view('dashboard')", "GPUs", show=False),
        Binding("2", "view('workloads')", "Workloads", show=False),
        Binding("3", "view('nodes')", "Nodes", show=False),
        Binding("s", "sort", "Sort"),
        Binding("S", "sort(True)", "Reverse", show=False),
        Binding("escape", "back", "Back", show=False),
    ]

    snapshot: reactive[rows.Snapshot | None] = reactive(None)
    filter_text: reactive[str] = reactive("")
    live: reactive[bool] = reactive(True)

    def __init__(self, source: Source, *, refresh_s: float = 1.0) -> None:
        super().__init__()
        if self.driver_class is driver.QuickEscapeDriver.__base__:
            self.driver_class = driver.QuickEscapeDriver  # Escape without a 100 ms wait
        self.source = source
        self.refresh_s = refresh_s
        self.objects: Objects | None = None
        self._seen: tuple[int, object] | None = None
        self._built_at = 0.0
        self._collector = idle_gc.IdleCollector()

    def compose(self) -> ComposeResult:
        """Banner, the three views, the prompt, the status bar and the key bar."""
        yield Static("", id="banner")
        with ContentSwitcher(initial="dashboard", id="views"):
            with Horizontal(id="dashboard"):
                yield GpuMonitor(id="gpus").data_bind(MegagpuApp.snapshot, MegagpuApp.filter_text)
                yield AgentPanel(id="agent").data_bind(MegagpuApp.snapshot)
            yield WorkloadTable(id="workloads").data_bind(
                MegagpuApp.snapshot, MegagpuApp.filter_text
            )
            yield NodeTable(id="nodes").data_bind(MegagpuApp.snapshot, MegagpuApp.filter_text)
        yield CommandBar(id="prompt")
        yield StatusBar(id="status").data_bind(MegagpuApp.live, MegagpuApp.filter_text)
        yield Footer()

    def on_mount(self) -> None:
        """Start the source and the refresh timer."""
        status = self.query_one(StatusBar)
        status.title, status.namespace = self.source.title, self.source.namespace
        status.refresh_s = self.refresh_s
        self.source.start()
        self.set_interval(min(self.refresh_s, POLL_S), self.poll)
        self.poll()
        self._collector.start()
        self.set_interval(idle_gc.IDLE_S / 2, self._collector.tick)

    def on_unmount(self) -> None:
        """Stop the source's watches."""
        self.source.stop()
        self._collector.stop()

    async def on_event(self, event: events.Event) -> None:
        """Every event passes here first: note keys, so that full collections wait."""
        if isinstance(event, events.Key):
            self._collector.key()
        await super().on_event(event)

    def poll(self) -> None:
        """Rebuild when the source changed and the refresh interval passed.

        A change of health rebuilds at once; every few seconds a rebuild moves the ages.
        """
        if not self.live:
            return
        version, health = self.source.version(), self.source.health()
        since = time.monotonic() - self._built_at
        changed = self._seen != (version, health)
        health_changed = self.snapshot is None or self.snapshot.health != health
        if (changed and (since >= self.refresh_s or health_changed)) or since >= AGE_REFRESH_S:
            self._built_at = time.monotonic()
            self.fetch(version, health)

    @work(thread=True, exclusive=True, group="fetch")
    def fetch(self, version: int, health: Health) -> None:
        """Build a snapshot in a thread; a newer fetch supersedes this one."""
        objects = self.source.objects()
        snapshot = rows.snapshot(objects, health)
        if not get_current_worker().is_cancelled:
            self.call_from_thread(self._apply, (version, health), objects, snapshot)

    def _apply(self, seen: tuple[int, object], objects: Objects, snapshot: rows.Snapshot) -> None:
        if not self.live:
            return
        self._seen, self.objects, self.snapshot = seen, objects, snapshot
        health = snapshot.health
        self.query_one(StatusBar).connection = health.connection.split(":")[0]
        banner = self.query_one("#banner", Static)
        banner.display = health.connection.startswith("unreachable")
        if banner.display:
            banner.update(
                f"Cannot reach the cluster ({health.connection}). The dashboard keeps "
                "retrying; check the API server and the kubeconfig. q quits."
            )
        if isinstance(self.screen, DetailScreen):
            self.screen.lines = tuple(self.detail_lines(self.screen.key))

    def detail_lines(self, key: str) -> list[str]:
        """What ``megagpu explain`` says about the workload ``namespace/name``."""
        if self.objects is None:
            return ["no data yet"]
        namespace, _, name = key.partition("/")
        for gw in self.objects.workloads:
            meta = gw["metadata"]
            if meta.get("namespace") == namespace and meta["name"] == name:
                events = [
                    e
                    for e in self.objects.events
                    if (e.get("involvedObject") or {}).get("name") == name
                    and (e.get("involvedObject") or {}).get("namespace") == namespace
                ]
                return explain.lines(gw, events)
        return [f"GpuWorkload {key} is gone"]

    @on(WorkloadTable.Selected)
    def _open_detail(self, event: WorkloadTable.Selected) -> None:
        self.push_screen(DetailScreen(event.key, self.detail_lines(event.key)))

    @on(CommandBar.Filter)
    def _filter(self, event: CommandBar.Filter) -> None:
        self.filter_text = event.text

    @on(CommandBar.Command)
    def _command(self, event: CommandBar.Command) -> None:
        text = event.text.lstrip(":").lower()
        if text in ("q", "quit", "q!"):
            self.exit()
        elif text in COMMANDS:
            self.action_view(COMMANDS[text])
        elif text:
            self.notify(
                f"unknown command {text!r}; try :gw, :nodes, :policy, :gpus or :q",
                severity="error",
            )

    @property
    def view(self) -> str:
        """The view shown: dashboard, workloads or nodes."""
        return str(self.query_one(ContentSwitcher).current)

    def action_view(self, view: str) -> None:
        """Switch to a view, draw what changed while it was hidden, and focus its table."""
        self.query_one(ContentSwitcher).current = view
        for panel in self.query(Panel):
            panel.catch_up()
        self.query_one(StatusBar).view = view
        self.query_one(f"#{'gpus' if view == 'dashboard' else view}").query_one(SyncedTable).focus()

    def action_pause(self) -> None:
        """Stop (or resume) following the source."""
        self.live = not self.live
        if self.live:
            self._built_at = 0.0
            self.poll()

    def action_theme(self) -> None:
        """Cycle the colour themes."""
        index = THEMES.index(self.theme) if self.theme in THEMES else -1
        self.theme = THEMES[(index + 1) % len(THEMES)]

    def action_help(self) -> None:
        """Show the keys."""
        self.push_screen(HelpScreen())

    def action_prompt(self, kind: str) -> None:
        """Open the filter or command prompt."""
        self.query_one(CommandBar).open(kind, self.filter_text if kind == "filter" else "")

    def action_sort(self, reverse: bool = False) -> None:
        """Sort the focused table by its next column, or flip its order."""
        table = self.focused if isinstance(self.focused, SyncedTable) else None
        if table is None:
            view = "gpus" if self.view == "dashboard" else self.view
            table = self.query_one(f"#{view}").query_one(SyncedTable)
        label = table.cycle_sort(reverse)
        self.notify(f"sorted by {label}{' (reversed)' if table.sort_reverse else ''}", timeout=2)

    def action_back(self) -> None:
        """Escape: clear the filter, else go back to the dashboard."""
        if self.filter_text:
            self.filter_text = ""
        elif self.view != "dashboard":
            self.action_view("dashboard")
