"""GPU monitor: every device on every node, with a memory-use history per device."""

from __future__ import annotations

from collections import deque
from functools import lru_cache

from textual.app import ComposeResult

from megagpu.tui import cells
from megagpu.tui.panel import Panel
from megagpu.tui.rows import DeviceRow, Snapshot
from megagpu.tui.synced_table import SyncedTable

HISTORY = 16
COLUMNS = (
    ("node", "NODE"),
    ("index", "#"),
    ("name", "DEVICE"),
    ("backend", "BACKEND"),
    ("util", "UTIL"),
    ("memory", "MEMORY"),
    ("history", "MEM HISTORY"),
    ("temp", "TEMP"),
)


class GpuMonitor(Panel):
    """Devices with utilization, memory, temperature by threshold and a memory sparkline."""

    PANEL = "gpus"
    TITLE = "GPUs"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history: dict[str, deque[float]] = {}

    def compose_body(self) -> ComposeResult:
        """The panel's widgets."""
        yield SyncedTable(COLUMNS, sort="node")

    def watch_snapshot(self, snapshot: Snapshot | None) -> None:
        """Redraw on a new snapshot."""
        if snapshot is not None:
            for d in snapshot.devices:
                share = d.memory_share
                if share is not None:
                    self.history.setdefault(d.key, deque(maxlen=HISTORY)).append(share)
        super().watch_snapshot(snapshot)

    def show(self, snapshot: Snapshot, filter_text: str) -> None:
        """Draw the snapshot's rows that match the filter."""
        needle = filter_text.lower()
        self.query_one(SyncedTable).sync(
            {
                d.key: cells_of(d, tuple(self.history.get(d.key, ())))
                for d in snapshot.devices
                if needle in d.text
            }
        )


@lru_cache(maxsize=16384)
def cells_of(d: DeviceRow, history: tuple[float, ...]) -> tuple[cells.Cell, ...]:
    """One device's cells (cached)."""
    return (
        cells.plain(d.node),
        cells.Cell(str(d.index), d.index),
        cells.plain(d.name if d.healthy else f"{d.name} (unhealthy)"),
        cells.plain(d.backends),
        cells.percent_bar(d.utilization),
        cells.memory(d.used_mib, d.total_mib),
        cells.sparkline(history),
        cells.temperature(d.temperature_c),
    )
