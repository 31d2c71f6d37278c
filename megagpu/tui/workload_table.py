"""Workloads: a sortable, filterable table; Enter asks for the detail view."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from textual import on
from textual.app import ComposeResult
from textual.message import Message

from megagpu.tui import cells
from megagpu.tui.panel import Panel
from megagpu.tui.rows import Snapshot, WorkloadRow
from megagpu.tui.synced_table import SyncedTable

COLUMNS = (
    ("namespace", "NAMESPACE"),
    ("name", "NAME"),
    ("type", "TYPE"),
    ("model", "MODEL"),
    ("gpus", "GPUS"),
    ("phase", "PHASE"),
    ("backend", "BACKEND"),
    ("node", "NODE"),
    ("mode", "MODE"),
    ("reward", "REWARD"),
    ("age", "AGE"),
)


@lru_cache(maxsize=16384)
def cells_of(w: WorkloadRow) -> tuple[cells.Cell, ...]:
    """One workload's cells (cached: most rows are the same from one frame to the next)."""
    return (
        cells.plain(w.namespace),
        cells.plain(w.name),
        cells.plain(w.workload_type),
        cells.plain(w.model),
        cells.Cell(str(w.gpus), w.gpus),
        cells.phase(w.phase),
        cells.plain(w.backend),
        cells.plain(w.node),
        cells.mode(w.mode),
        cells.signed(w.reward),
        cells.age(w.age_s),
    )


class WorkloadTable(Panel):
    """Every GpuWorkload of the namespace shown."""

    PANEL = "workloads"
    TITLE = "Workloads"

    @dataclass
    class Selected(Message):
        """The user asked for one workload's detail."""

        key: str

    def compose_body(self) -> ComposeResult:
        """The panel's widgets."""
        yield SyncedTable(COLUMNS, sort="age")

    def show(self, snapshot: Snapshot, filter_text: str) -> None:
        """Draw the snapshot's rows that match the filter."""
        needle = filter_text.lower()
        self.query_one(SyncedTable).sync(
            {w.key: cells_of(w) for w in snapshot.workloads if needle in w.text}
        )

    @on(SyncedTable.RowSelected)
    def _selected(self, event: SyncedTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.Selected(event.key))
