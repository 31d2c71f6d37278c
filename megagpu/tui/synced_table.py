"""A DataTable kept in step with a keyed set of rows: only changed cells are redrawn."""

from __future__ import annotations

from textual.widgets import DataTable

from megagpu.tui.cells import Cell

Row = tuple[Cell, ...]


class SyncedTable(DataTable[Cell]):
    """Rows by key; ``sync`` adds, updates and removes the difference, then re-sorts."""

    def __init__(self, columns: tuple[tuple[str, str], ...], *, sort: str, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.column_keys = tuple(key for key, _ in columns)
        self._labels = columns
        self.sort_column, self.sort_reverse = sort, False
        self._shown: dict[str, tuple[str, ...]] = {}

    def on_mount(self) -> None:
        """Add the columns."""
        for key, label in self._labels:
            self.add_column(label, key=key)

    def sync(self, rows: dict[str, Row]) -> None:
        """Make the table show exactly ``rows`` (in the current sort order)."""
        changed = False
        for key in [k for k in self._shown if k not in rows]:
            self.remove_row(key)
            del self._shown[key]
            changed = True
        for key, cells in rows.items():
            fingerprint = tuple(f"{c.plain}\x00{c.style}" for c in cells)
            old = self._shown.get(key)
            if old == fingerprint:
                continue
            if old is None:
                self.add_row(*cells, key=key)
            else:
                for column, cell, before, now in zip(
                    self.column_keys, cells, old, fingerprint, strict=True
                ):
                    if before != now:
                        self.update_cell(key, column, cell, update_width=True)
            self._shown[key] = fingerprint
            changed = True
        if changed:
            self._sort()

    def cycle_sort(self, reverse: bool = False) -> str:
        """Sort by the next column (or flip the order); returns the column's label."""
        if reverse:
            self.sort_reverse = not self.sort_reverse
        else:
            index = (self.column_keys.index(self.sort_column) + 1) % len(self.column_keys)
            self.sort_column, self.sort_reverse = self.column_keys[index], False
        self._sort()
        return dict(self._labels)[self.sort_column]

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """Clicking a header sorts by it; clicking again flips the order."""
        column = str(event.column_key.value)
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self._sort()

    def _sort(self) -> None:
        if self.row_count:
            self.sort(self.sort_column, key=lambda c: c.sort_key, reverse=self.sort_reverse)
