"""A fast table kept in step with a keyed set of rows.

It draws with Textual's line API (no Rich rendering per cell), so thousands of rows sort,
filter and scroll within a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from megagpu.tui.cells import Cell

Row = tuple[Cell, ...]
PAD = 1


@lru_cache(maxsize=256)
def _style(text: str) -> Style:
    return Style.parse(text) if text else Style()


class SyncedTable(ScrollView, can_focus=True):
    """Rows by key; ``sync`` replaces them, keeping the sort order and the cursor's row."""

    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "move(-1000000)", "First", show=False),
        Binding("end", "move(1000000)", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
    ]
    COMPONENT_CLASSES = {"synced-table--header", "synced-table--cursor", "synced-table--odd"}
    DEFAULT_CSS = """
    SyncedTable { background: $surface; }
    SyncedTable > .synced-table--header { text-style: bold; background: $panel; }
    SyncedTable > .synced-table--odd { background: $surface-lighten-1; }
    SyncedTable > .synced-table--cursor { background: $secondary 50%; }
    SyncedTable:focus > .synced-table--cursor { background: $accent; color: $text; }
    """

    cursor_row: reactive[int] = reactive(0)

    @dataclass
    class RowSelected(Message):
        """Enter (or a click) on a row."""

        table: SyncedTable
        key: str

    def __init__(self, columns: tuple[tuple[str, str], ...], *, sort: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.column_keys = tuple(key for key, _ in columns)
        self.labels = tuple(label for _, label in columns)
        self.sort_column, self.sort_reverse = sort, False
        self._rows: dict[str, Row] = {}
        self._order: list[str] = []
        self._widths = [len(label) for label in self.labels]
        self._styles: tuple[Style, Style, Style, Style] | None = None

    # --- data ------------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        """Rows shown."""
        return len(self._order)

    def get_row_at(self, index: int) -> Row:
        """The cells of the row at ``index`` (in display order)."""
        return self._rows[self._order[index]]

    def get_row_index(self, key: str) -> int:
        """Where the row ``key`` is shown."""
        return self._order.index(key)

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor."""
        return self._order[self.cursor_row] if self._order else None

    def sync(self, rows: dict[str, Row]) -> None:
        """Show exactly ``rows``; the cursor stays on its row when that row is still there."""
        if rows == self._rows:
            return
        keep = self.cursor_key
        self._rows = dict(rows)
        widths = [len(label) for label in self.labels]
        for cells in self._rows.values():
            for i, cell in enumerate(cells):
                if len(cell.plain) > widths[i]:
                    widths[i] = len(cell.plain)
        self._widths = widths
        self._sort(keep)

    def cycle_sort(self, reverse: bool = False) -> str:
        """Sort by the next column (or flip the order); returns the column's label."""
        if reverse:
            self.sort_reverse = not self.sort_reverse
        else:
            index = (self.column_keys.index(self.sort_column) + 1) % len(self.column_keys)
            self.sort_column, self.sort_reverse = self.column_keys[index], False
        self._sort(self.cursor_key)
        return self.labels[self.column_keys.index(self.sort_column)]

    def _sort(self, keep: str | None) -> None:
        column = self.column_keys.index(self.sort_column)
        rows = self._rows
        self._order = sorted(
            rows, key=lambda k: rows[k][column].sort_key, reverse=self.sort_reverse
        )
        width = sum(self._widths) + 2 * PAD * len(self._widths)
        self.virtual_size = Size(width, len(self._order) + 1)
        if keep is not None and keep in rows:
            self.cursor_row = self._order.index(keep)
        else:
            self.cursor_row = min(self.cursor_row, max(len(self._order) - 1, 0))
        self.refresh()

    # --- cursor ----------------------------------------------------------------------
    def move_cursor(self, row: int) -> None:
        """Put the cursor on ``row`` and scroll it into view."""
        self.cursor_row = max(0, min(row, len(self._order) - 1))

    def watch_cursor_row(self, old: int, new: int) -> None:
        """Keep the cursor's row in view."""
        visible = max(self.size.height - 1, 1)
        top = self.scroll_offset.y
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + visible:
            self.scroll_to(y=new - visible + 1, animate=False)
        self.refresh()

    def action_move(self, delta: int) -> None:
        """Move the cursor by ``delta`` rows."""
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        """Move the cursor by a screenful."""
        self.move_cursor(self.cursor_row + direction * max(self.size.height - 2, 1))

    def action_select(self) -> None:
        """Report the row under the cursor."""
        if self.cursor_key is not None:
            self.post_message(self.RowSelected(self, self.cursor_key))

    def on_click(self, event: events.Click) -> None:
        """A click on the header sorts by that column; on a row, moves the cursor there."""
        if event.y == 0:
            x, offset = event.x + self.scroll_offset.x, 0
            for key, width in zip(self.column_keys, self._widths, strict=True):
                offset += width + 2 * PAD
                if x < offset:
                    if key == self.sort_column:
                        self.sort_reverse = not self.sort_reverse
                    self.sort_column = key
                    self._sort(self.cursor_key)
                    return
        else:
            self.move_cursor(self.scroll_offset.y + event.y - 1)

    # --- drawing ---------------------------------------------------------------------
    def notify_style_update(self) -> None:
        """Styles changed (theme, focus): forget the line styles made from them."""
        self._styles = None
        super().notify_style_update()

    def _line_styles(self) -> tuple[Style, Style, Style, Style]:
        """(base, header, cursor, odd row) styles, kept until the styles change.

        ``rich_style`` walks every ancestor's styles: asked per line, it was half of a redraw.
        """
        if self._styles is None:
            base = self.rich_style
            self._styles = (base,) + tuple(
                base + self.get_component_rich_style(f"synced-table--{name}")
                for name in ("header", "cursor", "odd")
            )
        return self._styles

    def _line(self, texts: list[tuple[str, Style]], base: Style) -> list[Segment]:
        segments = []
        for (text, style), width in zip(texts, self._widths, strict=True):
            cell = " " * PAD + text[:width].ljust(width) + " " * PAD
            segments.append(Segment(cell, base + style if style else base))
        return segments

    def render_line(self, y: int) -> Strip:
        """The header on the first line, then the rows from the scroll position."""
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base, header, cursor, odd = self._line_styles()
        if y == 0:
            marks = [
                label + (("▼" if self.sort_reverse else "▲") if key == self.sort_column else "")
                for key, label in zip(self.column_keys, self.labels, strict=True)
            ]
            segments = self._line([(m, Style()) for m in marks], header)
        else:
            index = scroll_y + y - 1
            if index >= len(self._order):
                return Strip.blank(width, base)
            if index == self.cursor_row:
                line_style = cursor
            elif index % 2:
                line_style = odd
            else:
                line_style = base
            cells = self._rows[self._order[index]]
            segments = self._line([(c.plain, _style(str(c.style))) for c in cells], line_style)
        strip = Strip(segments).crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, line_style if y else base)
