"""The live extender's own work, without a control plane beside it on the machine.

Part of make bench-extender-live. GpuNode watch events (JSON lines as the API server sends them)
go through the extender's informer path (decode, trim, cache, convert, ledger) in-process: the
cost per event gives the idle CPU at a write rate without the API server's and etcd's noise;
filter+prioritize (Placement, no HTTP) is timed with a thread feeding those events at the live
rate (nodes / 15 s) and without it, so the difference is what the updates cost the requests.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from typing import Any

from benchmarks import extender_live, extender_load

CYCLES = 600


def _node(name: str) -> dict[str, Any]:
    from megagpu.core import model
    from megagpu.kube import convert

    node = convert.fake_node(model.Node(name, "h100", ("cuda",), 8, 81920))
    node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return node


def measure(size: int) -> dict[str, Any]:
    """Per-event cost and filter+prioritize p50/p99 with and without updates, for ``size``."""
    from kubernetes import client

    from megagpu.core import qpolicy
    from megagpu.extender import cluster, ledger, placement, server

    rng = random.Random(0)
    names = [f"h100-{i}" for i in range(size)]
    book = ledger.Ledger()
    policy = qpolicy.QPolicy(qpolicy.Params(mode="frozen"))
    policies = server.ReloadingPolicy(policy, lambda version: None)
    state = cluster.ClusterState(client.ApiClient(), "ns", book, policies)
    lines = [
        json.dumps(
            {
                "type": "MODIFIED",
                "object": {
                    "metadata": {"name": name, "resourceVersion": str(i)},
                    "status": extender_live.gpunode_status(name, rng),
                },
            }
        )
        for i, name in enumerate(names)
    ]
    state.nodes.relisting = True
    for name, line in zip(names, lines, strict=True):
        state.nodes.items[name] = _node(name)
        apply(state, line)
    state.nodes.relisting = False
    state._flush()

    start = time.perf_counter()
    for line in lines:
        apply(state, line)
    per_event_s = (time.perf_counter() - start) / len(lines)
    rate = size / extender_live.UPDATE_PERIOD_S

    async def no_bind(args: Any, annotations: dict[str, str]) -> None:
        return None

    place = placement.Placement(book, server.FixedPolicy(policy), no_bind, random.Random(0))
    quiet = cycles(place, names)
    stop = threading.Event()

    def feed() -> None:
        gap, i, begin = 1 / rate, 0, time.perf_counter()
        while not stop.is_set():
            delay = begin + i * gap - time.perf_counter()
            if delay > 0:
                stop.wait(delay)
            apply(state, lines[i % len(lines)])
            i += 1

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    busy = cycles(place, names)
    stop.set()
    feeder.join()
    return {
        "nodes": size,
        "per_event_us": round(per_event_s * 1e6, 1),
        "events_per_s": rate,
        "predicted_cpu_share_of_a_core": round(per_event_s * rate, 4),
        "pair_ms_updates_flowing": busy,
        "pair_ms_no_updates": quiet,
        "fleet_is_complete": len(book.fleet.nodes) == size,
    }


def apply(state: Any, line: str) -> None:
    """One GpuNode watch event through the extender's informer path."""
    from megagpu.extender import cluster

    obj = cluster._slim_gpunode(json.loads(line)["object"])
    state.gpunodes.items[obj["metadata"]["name"]] = obj
    state._node_event("MODIFIED", obj)


def cycles(place: Any, names: list[str]) -> dict[str, float]:
    """p50/p99 (ms) of filter, then prioritize of the nodes filter kept, for CYCLES pods."""
    from megagpu.extender import protocol

    samples = []
    for i in range(CYCLES):
        pod = extender_load.real_pod(f"uid-{i}")
        start = time.perf_counter()
        kept = place.filter(protocol.parse_args({"Pod": pod, "NodeNames": names}))
        place.prepare()
        place.prioritize(protocol.parse_args({"Pod": pod, "NodeNames": kept["NodeNames"]}))
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "p50": round(statistics.median(samples), 3),
        "p99": round(samples[(len(samples) - 1) * 99 // 100], 3),
    }
