"""A snapshot extender over a tiny cluster, for unit and fuzz tests."""

from __future__ import annotations

import random
from typing import Any

from megagpu.core import qpolicy
from megagpu.extender import ledger, placement, protocol
from tests.helpers import node

NODES = [
    node("h100-0", "h100", devices=8, fp16=800.0, gbps=3000.0, backends=("cuda", "vulkan")),
    node("t4-0", "t4", devices=4, fp16=65.0, gbps=320.0),
    node("mi-0", "mi210", devices=4, fp16=181.0, gbps=1600.0, backends=("vulkan",)),
    node("mac-0", "m2", devices=1, fp16=27.0, gbps=800.0, backends=("metal",)),
    node("cpu-0", "cpu", devices=0, fp16=0.5, gbps=40.0, backends=("cpu",)),
]
NAMES = [n.name for n in NODES]


class Recorder:
    """A binder that records Bindings (and can be told to conflict)."""

    def __init__(self) -> None:
        self.calls: list[tuple[protocol.BindingArgs, dict[str, str]]] = []
        self.bound: dict[str, str] = {}

    async def __call__(self, args: protocol.BindingArgs, annotations: dict[str, str]) -> None:
        if args.pod_uid in self.bound:
            raise placement.BindConflict(self.bound[args.pod_uid])
        self.calls.append((args, annotations))
        self.bound[args.pod_uid] = args.node


def make(mode: str = "active", seed: int = 0) -> tuple[placement.Placement, Recorder]:
    from megagpu.extender import server

    recorder = Recorder()
    policy = qpolicy.QPolicy(qpolicy.Params(mode=mode, epsilon_start=0.0, epsilon_min=0.0))
    return placement.Placement(
        ledger.Ledger(NODES), server.FixedPolicy(policy), recorder, random.Random(seed)
    ), recorder


def pod(
    uid: str,
    gpus: int = 1,
    backends: str = "cuda,vulkan",
    memory: int = 0,
    labelled: bool = True,
    **extra: str,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": f"p-{uid}",
        "namespace": "ns",
        "uid": uid,
        "annotations": {
            "megagpu.io/gpus": str(gpus),
            "megagpu.io/backends": backends,
            "megagpu.io/memory-mib": str(memory),
            "megagpu.io/model": "llama3-8b",
            "megagpu.io/workload-type": "inference",
            **extra,
        },
    }
    if labelled:
        meta["labels"] = {"megagpu.io/workload": f"w-{uid}"}
    return {"metadata": meta, "spec": {}}


def args(p: dict[str, Any], names: list[str] | None = None) -> protocol.ExtenderArgs:
    return protocol.parse_args({"Pod": p, "NodeNames": names or NAMES})


def binding(uid: str, node_name: str) -> protocol.BindingArgs:
    return protocol.BindingArgs(f"p-{uid}", "ns", uid, node_name)
