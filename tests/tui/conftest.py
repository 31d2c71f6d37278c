"""A frozen simulation source (the same frame every time) and a source tests can steer."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.worker import WorkerCancelled

from megagpu.io import cluster_spec, presets
from megagpu.tui.app import MegagpuApp
from megagpu.tui.sim_source import SimSource
from megagpu.tui.source import Health, Objects

ROOT = Path(__file__).resolve().parents[2]
DEV_SPEC = ROOT / "examples" / "clusters" / "dev.yaml"
FROZEN_AT_S = 1800.0


def frozen_source(at_s: float = FROZEN_AT_S) -> SimSource:
    """The dev cluster simulated with seed 0, its clock stopped at ``at_s``."""
    return SimSource(
        cluster_spec.load(DEV_SPEC),
        presets.mixed_table(),
        title="simulation dev.yaml",
        seed=0,
        at_s=at_s,
    )


def frozen_app(at_s: float = FROZEN_AT_S) -> MegagpuApp:
    """The dashboard over a frozen simulation (for snapshots)."""
    return MegagpuApp(frozen_source(at_s), refresh_s=0.2)


@pytest.fixture
def sim() -> SimSource:
    return frozen_source()


class StaticSource:
    """Objects and health that a test sets."""

    title, namespace = "static", "all"

    def __init__(self, objects: Objects, health: Health) -> None:
        self.objects_, self.health_, self.version_ = objects, health, 1
        self.started = self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def version(self) -> int:
        return self.version_

    def objects(self) -> Objects:
        return self.objects_

    def health(self) -> Health:
        return self.health_


async def settle(pilot) -> None:
    """Wait for the fetch worker and the redraw it causes."""
    for _ in range(100):
        try:
            await pilot.app.workers.wait_for_complete()
            break
        except WorkerCancelled:  # superseded by a newer fetch: wait for that one
            continue
    await pilot.pause()
