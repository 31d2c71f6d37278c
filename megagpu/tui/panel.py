"""The base of every panel: a title, a problem line, and the app's snapshot and filter bound in."""

from __future__ import annotations

from typing import Any

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

    stale = False
    """A change arrived while the panel was hidden: drawn when it is shown (``catch_up``)."""

    def shown(self) -> bool:
        """Whether this panel and every container above it are displayed."""
        node: Any = self
        while node is not None and node is not self.screen:
            if not node.display:
                return False
            node = node.parent
        return True

    def catch_up(self) -> None:
        """Draw what changed while hidden."""
        if self.stale and self.snapshot is not None:
            self.stale = False
            self._draw(self.snapshot)

    def watch_snapshot(self, snapshot: Snapshot | None) -> None:
        """Redraw on a new snapshot (hidden panels wait for ``catch_up``)."""
        if snapshot is not None:
            self._draw(snapshot)

    def watch_filter_text(self, text: str) -> None:
        """Redraw with the new filter (hidden panels wait for ``catch_up``)."""
        if self.snapshot is not None:
            self._draw(self.snapshot)

    def _draw(self, snapshot: Snapshot) -> None:
        if not self.shown():
            self.stale = True
            return
        problem = self.query_one(".problem", Static)
        text = snapshot.health.problems.get(self.PANEL, "")
        problem.update(text)
        problem.display = bool(text)
        self.show(snapshot, self.filter_text)

    def show(self, snapshot: Snapshot, filter_text: str) -> None:
        """Draw ``snapshot``, keeping only rows that match ``filter_text``."""
