"""What the dashboard reads: a source of Kubernetes-shaped objects (a cluster or a simulation).

Both sources hold GpuWorkloads, GpuNodes, Nodes, the policy and Events as the API server
returns them, so one conversion (``rows``) serves both, and a simulation looks like a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Obj = dict[str, Any]
PANELS = ("workloads", "gpus", "nodes", "policy", "events")


@dataclass(frozen=True)
class Objects:
    """One consistent read of a source."""

    now: float
    """The source's clock, epoch seconds (simulated time for a simulation)."""
    workloads: list[Obj]
    gpunodes: list[Obj]
    nodes: list[Obj]
    policy: Obj | None
    events: list[Obj]


@dataclass(frozen=True)
class Health:
    """Whether the source is reachable, and what each panel cannot show and why."""

    connection: str
    """``connected``, ``connecting`` or ``unreachable``."""
    problems: dict[str, str] = field(default_factory=dict)
    """Panel (one of ``PANELS``) -> what is wrong and what to do."""


class Source(Protocol):
    """A cluster or a simulation, read by the dashboard."""

    title: str
    """What the status bar names: the cluster context or the simulated spec."""
    namespace: str
    """The namespace shown, or ``all``."""

    def start(self) -> None:
        """Begin following changes (watches, a simulation clock)."""
        ...

    def stop(self) -> None:
        """Stop following."""
        ...

    def version(self) -> int:
        """A number that changes whenever anything the source holds changed."""
        ...

    def objects(self) -> Objects:
        """The current objects."""
        ...

    def health(self) -> Health:
        """Connection state and per-panel problems."""
        ...
