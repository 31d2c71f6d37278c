"""One workload in detail: what ``megagpu explain`` shows, kept up to date."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Static


class DetailScreen(Screen[None]):
    """The decision, its alternatives and scores, the reward, conditions and Events."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    lines: reactive[tuple[str, ...]] = reactive(())

    def __init__(self, key: str, lines: list[str]) -> None:
        super().__init__()
        self.key = key
        self.set_reactive(DetailScreen.lines, tuple(lines))

    def compose(self) -> ComposeResult:
        """The text, scrollable, and the key bar."""
        with VerticalScroll():
            yield Static(self.key, classes="panel-title")
            yield Static("\n".join(self.lines), id="detail-text", markup=False)
        yield Footer()

    def watch_lines(self, lines: tuple[str, ...]) -> None:
        """Redraw when the workload changes."""
        if self.is_mounted:
            self.query_one("#detail-text", Static).update("\n".join(lines))
