"""The status bar: LIVE or PAUSED, cluster and namespace, connection state, refresh rate."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static


class StatusBar(Static):
    """One line of state; every field is set by the app."""

    live: reactive[bool] = reactive(True)
    title: reactive[str] = reactive("")
    namespace: reactive[str] = reactive("all")
    connection: reactive[str] = reactive("connecting")
    refresh_s: reactive[float] = reactive(1.0)
    filter_text: reactive[str] = reactive("")
    view: reactive[str] = reactive("dashboard")

    def render(self) -> str:
        """The line, with the connection coloured by state."""
        state = "[b green]LIVE[/]" if self.live else "[b yellow]PAUSED[/]"
        colour = (
            "green"
            if self.connection == "connected"
            else "yellow"
            if self.connection == "connecting"
            else "red"
        )
        parts = [
            state,
            f"{self.title}",
            f"ns {self.namespace}",
            f"[{colour}]{self.connection}[/]",
            f"refresh {self.refresh_s:g}s",
            f":{self.view}",
        ]
        if self.filter_text:
            parts.append(f"filter /{self.filter_text}")
        return " │ ".join(parts)
