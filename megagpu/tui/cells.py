"""Table cells that sort by their value, and the formats the panels share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.text import Text

SPARK = "▁▂▃▄▅▆▇█"
PHASE_STYLES = {
    "Pending": "dim",
    "Scheduling": "yellow",
    "Running": "cyan",
    "Succeeded": "green",
    "Failed": "bold red",
}
MODE_STYLES = {"explore": "magenta", "forced": "dim", "overridden": "yellow", "fallback": "red"}
TEMP_WARN_C, TEMP_HOT_C = 70.0, 85.0


class Cell(Text):
    """Rich text that sorts by ``value`` (None sorts last)."""

    def __init__(self, text: str, value: Any = None, style: str = "") -> None:
        super().__init__(text, style=style)
        self.sort_key = (1, 0) if value is None else (0, value)


def plain(text: str, value: Any = None) -> Cell:
    """A cell sorted by ``value``, or by its text."""
    return Cell(text, text.lower() if value is None else value)


def age(seconds: float | None) -> Cell:
    """``45s``, ``12m``, ``3h``, ``2d``."""
    if seconds is None:
        return Cell("-")
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return Cell(f"{s // size}{unit}", seconds)
    return Cell(f"{s}s", seconds)


def seconds(value: float | None) -> Cell:
    """A duration in seconds, or ``-``."""
    return Cell("-") if value is None else Cell(f"{value:.0f}s", value)


def predicted(seconds: float | None, sigma: float | None) -> Cell:
    """A predicted run time with its uncertainty (``25s±10%``), or ``-``; sorts by seconds."""
    if seconds is None:
        return Cell("-")
    if sigma is None or not 0 <= sigma < 5:
        return Cell(f"{seconds:.0f}s", seconds)
    return Cell(f"{seconds:.0f}s±{100 * (math.exp(sigma) - 1):.0f}%", seconds)


def signed(value: float | None) -> Cell:
    """A reward: red when negative."""
    if value is None:
        return Cell("-")
    return Cell(f"{value:+.2f}", value, "red" if value < -0.1 else "green")


def phase(text: str) -> Cell:
    """A workload phase in its colour."""
    return Cell(text, text, PHASE_STYLES.get(text, ""))


def mode(text: str) -> Cell:
    """A decision mode in its colour."""
    return Cell(text, text, MODE_STYLES.get(text, ""))


def temperature(celsius: float | None) -> Cell:
    """Green, yellow from 70 C, red from 85 C."""
    if celsius is None:
        return Cell("n/a")
    style = "red" if celsius >= TEMP_HOT_C else "yellow" if celsius >= TEMP_WARN_C else "green"
    return Cell(f"{celsius:.0f}C", celsius, style)


def percent_bar(share: float | None, width: int = 10) -> Cell:
    """``███▌      42%`` for a share 0..1."""
    if share is None:
        return Cell("n/a")
    filled = round(max(0.0, min(share, 1.0)) * width)
    style = "red" if share >= 0.9 else "yellow" if share >= 0.7 else "green"
    return Cell(f"{'█' * filled}{'·' * (width - filled)} {share * 100:3.0f}%", share, style)


def memory(used_mib: float | None, total_mib: float | None) -> Cell:
    """``12.0/80.0 GiB``."""
    if used_mib is None or not total_mib:
        return Cell("n/a")
    return Cell(f"{used_mib / 1024:.1f}/{total_mib / 1024:.0f} GiB", used_mib / total_mib)


def sparkline(values: Sequence[float], top: float = 1.0) -> Cell:
    """A text sparkline of values in 0..``top``."""
    if not values:
        return Cell("")
    steps = len(SPARK) - 1
    text = "".join(SPARK[round(max(0.0, min(v / top, 1.0)) * steps)] for v in values)
    return Cell(text, values[-1], "cyan")
