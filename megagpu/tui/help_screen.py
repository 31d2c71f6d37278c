"""The help screen: every key and command."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """[b]megagpu dashboard[/]

[b]q[/]        quit                  [b]p[/]  pause / resume
[b]t[/]        next theme            [b]h[/]  this help
[b]/[/]        filter the view       [b]:[/]  command
[b]1 2 3[/]    GPUs+agent, workloads, nodes
[b]s / S[/]    sort by next column / flip the order
[b]Enter[/]    workload detail       [b]Escape[/]  back, close, clear filter

[b]commands[/]  :gw  :nodes  :policy  :gpus  :q

Escape closes this help."""


class HelpScreen(ModalScreen[None]):
    """Keys and commands; any of Escape, h or q closes it."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("h", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        """The help text in a box."""
        with Vertical(id="help-box"):
            yield Static(HELP)
