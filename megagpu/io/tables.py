"""Throughput tables and traces (DESIGN 9.5): CSV with a header, columns matched by name."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from megagpu.core import model
from megagpu.io.errors import InputError
from megagpu.sim import hardware, simulator

THROUGHPUT_COLUMNS = ("model", "device", "backend", "gpus", "throughput")
THROUGHPUT_OPTIONAL = ("source",)
TRACE_COLUMNS = ("arrival_s", "workload_type", "model", "gpus", "work")
TRACE_OPTIONAL = ("priority", "memory_mib", "deadline_s")


def _rows(
    path: str | Path, required: tuple[str, ...], optional: tuple[str, ...]
) -> Iterator[tuple[int, Callable[[str, Callable[[str], Any]], Any], dict[str, str]]]:
    """Yield (line, typed getter, raw row) for each data row, checking the header first."""
    name = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InputError(name, f"cannot read the file: {e.strerror}") from e
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise InputError(name, f"empty file: expected a header row {','.join(required)}", 1, 1)
    header = [h.strip() for h in header]
    for column, title in enumerate(header, 1):
        if title not in required and title not in optional:
            raise InputError(
                name,
                f"unknown column {title!r}; expected {','.join(required)}[,{','.join(optional)}]",
                1,
                column,
            )
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(name, f"missing column(s) {missing} in the header", 1)
    for values in reader:
        line = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise InputError(name, f"expected {len(header)} fields, found {len(values)}", line)
        row = dict(zip(header, (v.strip() for v in values), strict=True))

        def get(
            key: str, convert: Callable[[str], Any], _row: dict[str, str] = row, _line: int = line
        ) -> Any:
            try:
                value = convert(_row[key])
            except (ValueError, model.ValidationError) as e:
                raise InputError(name, f"{key}: {e}", _line, header.index(key) + 1) from e
            return value

        yield line, get, row


def finite(minimum: float = 0.0) -> Callable[[str], float]:
    """A converter to a finite float >= minimum that names what is wrong."""

    def convert(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"must be finite, got {text!r}")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}, got {text!r}")
        return value

    return convert


def count(text: str) -> int:
    """A non-negative integer."""
    value = int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {text!r}")
    return value


def load_throughputs(path: str | Path) -> hardware.ThroughputTable:
    """Parse a throughput table."""
    rows = []
    for _, get, raw in _rows(path, THROUGHPUT_COLUMNS, THROUGHPUT_OPTIONAL):
        rows.append(
            hardware.ThroughputRow(
                model=get("model", str),
                device=get("device", str),
                backend=get("backend", _backend),
                gpus=get("gpus", count),
                throughput=get("throughput", finite()),
                source=get("source", _source) if raw.get("source") else "measured",
            )
        )
    if not rows:
        raise InputError(str(path), "the throughput table has no rows")
    return hardware.ThroughputTable(rows)


def _backend(text: str) -> str:
    if text not in model.BACKENDS:
        raise ValueError(f"must be one of {model.BACKENDS}, got {text!r}")
    return text


def _source(text: str) -> str:
    if text not in hardware.SOURCES:
        raise ValueError(f"must be one of {hardware.SOURCES}, got {text!r}")
    return text


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in options:
            raise ValueError(f"must be one of {options}, got {text!r}")
        return text

    return convert


def load_trace(
    path: str | Path,
    table: hardware.ThroughputTable,
    max_gpus: int,
    *,
    drop_oversized: bool = False,
    backends: tuple[str, ...] = model.BACKENDS,
) -> tuple[list[simulator.Job], int]:
    """Parse a trace into jobs; returns (jobs, rows dropped as larger than the largest node)."""
    known = set(table.models())
    jobs: list[simulator.Job] = []
    dropped = 0
    for line, get, raw in _rows(path, TRACE_COLUMNS, TRACE_OPTIONAL):
        name = get("model", str)
        if name not in known:
            raise InputError(
                str(path),
                f"model {name!r} is not in the throughput table; known "
                f"models: {', '.join(sorted(known))}",
                line,
            )
        gpus = get("gpus", count)
        if gpus > max_gpus:
            if drop_oversized:
                dropped += 1
                continue
            raise InputError(
                str(path),
                f"row needs {gpus} GPUs but the largest node has "
                f"{max_gpus}; use --drop-oversized to skip such rows",
                line,
            )
        deadline = get("deadline_s", finite()) if raw.get("deadline_s") else None
        workload = model.Workload(
            uid=f"job-{line}",
            workload_type=get("workload_type", _choice(model.WORKLOAD_TYPES)),
            model=name,
            gpus=gpus,
            work=get("work", finite()),
            priority=get("priority", _choice(model.PRIORITIES))
            if raw.get("priority")
            else "normal",
            memory_mib=get("memory_mib", count) if raw.get("memory_mib") else 0,
            deadline_s=deadline,
            backends=backends,
        )
        jobs.append(simulator.Job(get("arrival_s", finite()), workload))
    if not jobs:
        raise InputError(str(path), "the trace has no jobs: add rows below the header")
    return jobs, dropped


def write_csv(path: str | Path, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Write rows under a header."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
