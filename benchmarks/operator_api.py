"""The operator's API load, in process: calls per completed workload and bytes per learning
update, measured on the operator's own handler code against a counting in-memory API.

A workload's life is driven as kopf and the cluster would drive it: the create handler, then
the pod events a scheduler and a kubelet cause (bound, Running, Succeeded), each through
``handlers.follow``, whose completion learns (one compare-and-swap of the Q-state) and
publishes the policy's progress. Every call megagpu's code makes is counted, and each Event it
asks kopf to post (``kopf.info``/``kopf.warn``) counts as one create. Not counted: kopf's watch
streams and its own bookkeeping patches of the GpuWorkload (finalizer, handler progress).
"""

from __future__ import annotations

import collections
import json
import random
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from unittest import mock

import kopf

from megagpu.core import model, qpolicy
from megagpu.kube import names, qstore, render
from megagpu.operator import handlers, outcomes, watchdog
from tests.kube.fake_configmaps import ConfigMaps

DEVICES = ("h100", "a100", "l4", "v100", "t4")
CALLS_BOUND = 13
"""At most this many API calls per completed workload (megagpu's own, amortized)."""


class Counting:
    """Counts every method called on ``target`` by name, then calls it."""

    def __init__(self, target: Any, counts: collections.Counter[str]) -> None:
        self._target, self._counts = target, counts

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._target, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._counts[name + (" (dry run)" if kwargs.get("dry_run") else "")] += 1
            return method(*args, **kwargs)

        return counted


class Api:
    """Just enough of the API server for one namespace's workloads, pods and policy."""

    def __init__(self) -> None:
        self.workloads: dict[str, dict[str, Any]] = {}
        self.configmaps = ConfigMaps()
        self.policy_rv = 1

    # CoreV1Api: pods (replies read raw) and the Q-state's ConfigMaps
    def create_namespaced_pod(self, namespace: str, pod: Any, **_: Any) -> Any:
        return SimpleNamespace(read=lambda: b"{}")

    def delete_namespaced_pod(self, *_: Any, **__: Any) -> Any:
        return SimpleNamespace(read=lambda: b"{}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.configmaps, name)

    # CustomObjectsApi: GpuWorkloads and the GpuSchedulingPolicy
    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        return json.loads(json.dumps(self.workloads[args[-1]]))

    def patch_namespaced_custom_object_status(self, *args: Any) -> None:
        status = self.workloads[args[-2]].setdefault("status", {})
        status.update(args[-1]["status"])

    def get_cluster_custom_object(self, *_: Any) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": str(self.policy_rv)}, "status": {}}

    def patch_cluster_custom_object_status(self, *args: Any) -> dict[str, Any]:
        self.policy_rv += 1
        return {"metadata": {"resourceVersion": str(self.policy_rv)}}


def _nodes(count: int) -> dict[str, model.Node]:
    nodes = {}
    for i in range(count):
        device = DEVICES[i % len(DEVICES)]
        bench = model.Benchmarks(100.0 + 50 * i % 400, 400.0 + 100 * (i % 7), 2000.0)
        nodes[f"{device}-{i}"] = model.Node(f"{device}-{i}", device, ("cuda",), 8, 40960, bench)
    return nodes


def _gw(i: int, classes: int) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": "GpuWorkload",
        "metadata": {"name": f"w{i}", "namespace": "ml", "uid": f"gw-{i}", "generation": 1},
        "spec": {
            "workloadType": "inference",
            "model": f"model-{i % classes}",
            "gpus": 1,
            "backends": ["cuda"],
            "work": {"amount": 1000, "unit": "tokens"},
            "template": {"spec": {"containers": [{"name": "w", "image": "busybox"}]}},
        },
    }


def _events(pod: dict[str, Any], node: str, i: int) -> list[dict[str, Any]]:
    """The pod as each watch event shows it: created, bound, Running, Succeeded."""
    decision = {"mode": "exploit", "score": 1.0, "qValues": {}, "alternatives": []}
    bound = json.loads(json.dumps(pod))
    bound["metadata"]["uid"] = f"pod-{i}"
    bound["metadata"]["annotations"] |= {
        names.ANN_DECISION: json.dumps(decision),
        names.ANN_ASSIGNED_BACKEND: "cuda",
        names.ANN_ASSIGNED_DEVICES: "0",
    }
    bound["spec"]["nodeName"] = node
    running = json.loads(json.dumps(bound))
    running["status"] = {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}
    done = json.loads(json.dumps(running))
    terminated = {
        "exitCode": 0,
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": f"2026-01-01T00:00:{10 + i % 40}Z",
    }
    done["status"] = {
        "phase": "Succeeded",
        "containerStatuses": [{"state": {"terminated": terminated}}],
    }
    return [{**pod, "metadata": {**pod["metadata"], "uid": f"pod-{i}"}}, bound, running, done]


def calls_per_workload(workloads: int = 300, classes: int = 50, nodes: int = 200) -> dict[str, Any]:
    """Drive ``workloads`` to completion, one a second; the calls each one cost."""
    api, counts, clock = Api(), collections.Counter[str](), [0.0]
    store = qstore.Store(Counting(api, counts), "megagpu-system", clock=lambda: clock[0])  # type: ignore[arg-type]
    memo = handlers.Memo(Counting(api, counts), Counting(api, counts), store, "megagpu-system")  # type: ignore[arg-type]
    memo.nodes = _nodes(nodes)
    memo.queue_by_size = True  # as the chart runs it
    names_ = list(memo.nodes)
    rng = random.Random(0)
    posted = mock.Mock(side_effect=lambda *a, **k: counts.update(["create_event (kopf)"]))
    with mock.patch.object(kopf, "info", posted), mock.patch.object(kopf, "warn", posted):
        for i in range(workloads):
            clock[0] = float(i)
            gw = _gw(i, classes)
            api.workloads[gw["metadata"]["name"]] = gw
            fields = handlers.start_attempt(gw, 1, memo)
            counts["patch_status (kopf, the create handler's result)"] += 1
            gw["status"] = fields
            pod = render.render_pod(gw, 1)
            for event in _events(pod, rng.choice(names_), i):
                handlers.remember(event, "MODIFIED", memo)
                handlers.follow(event, memo)
            handlers.remember_workload(api.workloads[gw["metadata"]["name"]], "MODIFIED", memo)
            watchdog.sweep(memo)  # a pass over a finished workload costs nothing
    done = sum(1 for w in api.workloads.values() if w["status"].get("phase") == "Succeeded")
    total = sum(counts.values())
    return {
        "workloads": workloads,
        "completed": done,
        "model_classes": classes,
        "nodes": nodes,
        "completions_per_second": 1.0,
        "calls_per_completed_workload": round(total / max(done, 1), 2),
        "by_call": {k: round(v / max(done, 1), 3) for k, v in sorted(counts.items())},
        "bound": CALLS_BOUND,
    }


def _outcome(i: int, classes: int, rng: random.Random) -> model.Outcome:
    workload = model.Workload(
        uid=f"w{i}",
        workload_type=rng.choice(["inference", "training"]),
        model=f"model-{rng.randrange(classes)}",
        gpus=1,
        memory_mib=rng.choice([8000, 40000]),
        backends=("cuda",),
    )
    device = rng.choice(DEVICES)
    return model.Outcome(
        uid=f"{i:08x}-0000-4000-8000-{rng.getrandbits(48):012x}",
        workload=workload,
        node=f"{device}-0",
        backend="cuda",
        device_class=device,
        duration_s=rng.uniform(5, 50),
        work=1000.0,
        work_source="reported",
    )


def bytes_per_update(classes: int, warm: int = 3000, measured: int = 200) -> dict[str, Any]:
    """Bytes one learning update writes, once the Q-state is full-grown (``warm`` outcomes
    learned, the 4,096 learned UIDs full), at one completion a second."""
    rng, clock = random.Random(classes), [0.0]
    store = qstore.Store(ConfigMaps(), "megagpu-system", clock=lambda: clock[0])  # type: ignore[arg-type]
    fleet_nodes = list(_nodes(len(DEVICES)).values())
    seeded = qpolicy.QPolicy()
    seeded.remember_learned(
        f"{i:08x}-5eed-4000-8000-000000000000" for i in range(qpolicy.LEARNED_UIDS)
    )
    store.save(seeded, None)
    for i in range(warm):
        outcomes.learn(store, _outcome(i, classes, rng), fleet_nodes)
    policy = store.load().policy
    whole = len(qstore.qstate.dumps(policy).encode()) if policy else 0
    start = store.bytes_written
    for i in range(warm, warm + measured):
        clock[0] = float(i)
        outcomes.learn(store, _outcome(i, classes, rng), fleet_nodes)
    data = store.core.objects[names.STATE_CONFIGMAP]["data"]  # type: ignore[attr-defined]
    return {
        "model_classes": classes,
        "classes_tracked": len(policy.classes) if policy else 0,
        "document_bytes": whole,
        "state_json_bytes": len(data[qstore.KEY].encode()),
        "bytes_per_update": round((store.bytes_written - start) / measured),
        "bytes_per_update_before": 2 * whole,
        "note_before": "the whole document replaced and copied to a history ConfigMap per update",
    }
