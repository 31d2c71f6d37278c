"""The base of every panel: a title, a problem line, and the app's snapshot and filter bound in."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Static

from megagpu.tui.rows import Snapshot


class Panel(Vertical):
    """Shows ``snapshot`` (bound from the app); says what it cannot show and why."""

    PANEL = ""
    """The panel's name in ``Health.problems``."""
    TITLE = ""

    snapshot: reactive[Snapshot | None] = reactive(None)
    filter_text: reactive[str] = reactive("")

    def compose_body(self) -> ComposeResult:
        """The panel's own widgets."""
        yield from ()

    def compose(self) -> ComposeResult:
        """Title, problem line, then the panel's widgets."""
        yield Static(self.TITLE, classes="panel-title")
        yield Static("", classes="problem")
        yield from self.compose_body()

    def watch_snapshot(self, snapshot: Snapshot | None) -> None:
        """Redraw on a new snapshot."""
        if snapshot is None:
            return
        problem = self.query_one(".problem", Static)
        text = snapshot.health.problems.get(self.PANEL, "")
        problem.update(text)
        problem.display = bool(text)
        self.show(snapshot, self.filter_text)

    def watch_filter_text(self, text: str) -> None:
        """Redraw with the new filter."""
        if self.snapshot is not None:
            self.show(self.snapshot, text)

    def show(self, snapshot: Snapshot, filter_text: str) -> None:
        """Draw ``snapshot``, keeping only rows that match ``filter_text``."""
