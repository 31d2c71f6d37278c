"""The prompt for ``/`` (filter as you type) and ``:`` (k9s-style commands)."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class CommandBar(Input):
    """Invisible until ``/`` or ``:`` (its line is kept); Enter submits, Escape closes."""

    BINDINGS = [Binding("escape", "close", "Close", show=False)]

    @dataclass
    class Filter(Message):
        """The filter text changed."""

        text: str

    @dataclass
    class Command(Message):
        """A ``:`` command was entered."""

        text: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = "filter"
        self.can_focus = False

    def open(self, kind: str, text: str = "") -> None:
        """Show the prompt for ``filter`` or ``command``."""
        self.kind = kind
        self.placeholder = "filter…" if kind == "filter" else "command: gw, nodes, policy, gpus, q"
        self.value = text
        self.visible = self.can_focus = True
        self.focus()

    def action_close(self) -> None:
        """Hide the prompt, keeping the current filter."""
        self.visible = self.can_focus = False  # its line stays: no reflow of the screen
        self.screen.focus_next()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.kind == "filter":
            self.post_message(self.Filter(event.value))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.kind == "command":
            self.post_message(self.Command(event.value.strip()))
        self.action_close()
