"""Nodes: backends, devices, health and what runs there."""

from __future__ import annotations

from functools import lru_cache

from textual.app import ComposeResult

from megagpu.tui import cells
from megagpu.tui.panel import Panel
from megagpu.tui.rows import NodeRow, Snapshot
from megagpu.tui.synced_table import SyncedTable

COLUMNS = (
    ("name", "NAME"),
    ("ready", "READY"),
    ("device", "DEVICE"),
    ("backends", "BACKENDS"),
    ("devices", "DEVICES"),
    ("health", "HEALTH"),
    ("running", "RUNNING"),
    ("probed", "PROBED"),
)


class NodeTable(Panel):
    """Every Node with what its probe found."""

    PANEL = "nodes"
    TITLE = "Nodes"

    def compose_body(self) -> ComposeResult:
        """The panel's widgets."""
        yield SyncedTable(COLUMNS, sort="name")

    def show(self, snapshot: Snapshot, filter_text: str) -> None:
        """Draw the snapshot's rows that match the filter."""
        needle = filter_text.lower()
        self.query_one(SyncedTable).sync(
            {n.name: cells_of(n) for n in snapshot.nodes if needle in n.text}
        )


@lru_cache(maxsize=4096)
def cells_of(n: NodeRow) -> tuple[cells.Cell, ...]:
    """One node's cells (cached)."""
    return (
        cells.plain(n.name),
        cells.Cell("yes", 1, "green") if n.ready else cells.Cell("NO", 0, "bold red"),
        cells.plain(n.device_class),
        cells.plain(n.backends),
        cells.Cell(str(n.devices), n.devices),
        cells.Cell(n.health, n.health, "" if "/" in n.health else "red"),
        cells.Cell(str(n.running), n.running),
        cells.age(n.probed_s),
    )
