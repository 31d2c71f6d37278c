"""The key bar: the shown bindings of a screen, one line, drawn once.

Textual's Footer recomposes on every focus change (opening and closing the prompt), which
cost tens of milliseconds per Escape on a large dashboard; these keys never change.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static


class KeyBar(Static):
    """``key description`` pairs of the bindings marked ``show``."""

    def __init__(self, bindings: Iterable[Binding], **kwargs) -> None:
        super().__init__("", **kwargs)
        self._bindings = [b for b in bindings if b.show]

    def on_mount(self) -> None:
        """Write the keys with the app's key names (``/`` for slash)."""
        text = Text(no_wrap=True, overflow="ellipsis")
        for binding in self._bindings:
            text.append(f" {self.app.get_key_display(binding)} ", style="bold reverse")
            text.append(f" {binding.description}  ")
        self.update(text)
