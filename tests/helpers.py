"""Small builders shared by unit tests."""

from __future__ import annotations

import numpy as np

from megagpu.core import fleet, model


def node(
    name: str,
    device: str,
    devices: int = 4,
    fp16: float = 100.0,
    gbps: float = 1000.0,
    backends: tuple[str, ...] = ("cuda",),
    fp32: float | None = None,
) -> model.Node:
    return model.Node(
        name,
        device,
        backends,
        devices,
        16384,
        model.Benchmarks(fp32 if fp32 is not None else fp16 / 4, fp16, gbps),
    )


def workload(uid: str = "w", model_name: str = "m", gpus: int = 1, **kw: object) -> model.Workload:
    return model.Workload(
        uid=uid,
        workload_type=kw.pop("workload_type", "training"),  # type: ignore[arg-type]
        model=model_name,
        gpus=gpus,
        **kw,
    )  # type: ignore[arg-type]


def view(
    nodes: list[model.Node], w: model.Workload, free: list[int] | None = None, queue_length: int = 0
) -> fleet.View:
    f = fleet.Fleet.build(nodes)
    slots = np.asarray(free if free is not None else [n.slots for n in nodes], dtype=np.int64)
    return fleet.View(f, f.feasible_rows(w, slots), slots, queue_length)
