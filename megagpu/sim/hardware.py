"""Hardware model: measured throughputs of (model, device, backend, gpus), exact match."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from megagpu.core import fleet, model

SOURCES = ("measured", "derived", "device-measured")


@dataclass(frozen=True)
class ThroughputRow:
    """One row of the throughput table (work units per second)."""

    model: str
    device: str
    backend: str
    gpus: int
    throughput: float
    source: str = "measured"

    def __post_init__(self) -> None:
        model.check_finite(f"throughput of {self.model} on {self.device}", self.throughput)
        if self.source not in SOURCES:
            raise model.ValidationError(f"source must be one of {SOURCES}, got {self.source!r}")


class ThroughputTable:
    """Lookup of throughputs; a missing row means that combination cannot run."""

    def __init__(self, rows: Iterable[ThroughputRow]) -> None:
        self.rows = tuple(rows)
        self._by_key = {(r.model, r.device, r.backend, r.gpus): r for r in self.rows}
        self._arrays: dict[tuple[int, str, int], tuple[fleet.Fleet, np.ndarray, np.ndarray]] = {}
        """Cache by fleet identity; the fleet is held so that its id is never reused."""

    def models(self) -> list[str]:
        """Every model in the table, sorted."""
        return sorted({r.model for r in self.rows})

    def get(self, model_name: str, device: str, backend: str, gpus: int) -> ThroughputRow | None:
        """The row for an exact combination, or None."""
        return self._by_key.get((model_name, device, backend, gpus))

    def arrays(self, f: fleet.Fleet, model_name: str, gpus: int) -> tuple[np.ndarray, np.ndarray]:
        """(throughput, is-derived) per fleet row for one model and GPU count, cached."""
        key = (id(f), model_name, gpus)
        if key not in self._arrays:
            thr = np.zeros(len(f.row_node))
            derived = np.zeros(len(f.row_node), dtype=bool)
            for row, node_index in enumerate(f.row_node):
                device = f.nodes[int(node_index)].device_class
                hit = self.get(model_name, device, f.row_backend[row], gpus)
                if hit is not None:
                    thr[row] = hit.throughput
                    derived[row] = hit.source == "derived"
            self._arrays[key] = (f, thr, derived)
        return self._arrays[key][1:]
