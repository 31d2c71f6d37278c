"""A running simulation as a dashboard source: the Q-policy placing a stream of workloads.

The run is computed up front (deterministic for a seed) and played back on a clock, as the
objects a cluster would hold: GpuWorkloads with decisions and rewards, GpuNodes whose devices
are busy while a workload runs on them, Nodes, the policy status and Events.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from megagpu.core import fleet, model, qpolicy, scoring
from megagpu.kube import convert, names
from megagpu.sim import hardware, simulator
from megagpu.tui.source import Health, Obj, Objects

SIM_EPOCH = 1_767_225_600.0
"""The simulated clock's origin: 2026-01-01T00:00:00Z."""
NAMESPACE = "sim"


def iso(t: float) -> str:
    """RFC 3339 of simulated second ``t``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(SIM_EPOCH + t))


def stream(
    table: hardware.ThroughputTable,
    devices: set[str],
    seed: int,
    count: int,
    gap_s: float = 12.0,
) -> list[simulator.Job]:
    """``count`` example workloads that some device of ``devices`` can run.

    Training and fine-tuning on the Gavel models, inference on the LLMs.
    """
    rng = random.Random(seed)
    pairs = sorted({(r.model, r.gpus) for r in table.rows if r.gpus <= 4 and r.device in devices})
    now, jobs = 0.0, []
    for i in range(count):
        name, gpus = rng.choice(pairs)
        llm = name.startswith("llama")
        kind = rng.choice(("inference", "batchInference") if llm else ("training", "fineTuning"))
        rates = [r.throughput for r in table.rows if r.model == name and r.gpus == gpus]
        work = float(np.median(rates)) * rng.uniform(60, 480)
        now += rng.expovariate(1 / gap_s)
        jobs.append(
            simulator.Job(
                now,
                model.Workload(
                    uid=f"{kind.lower()}-{name}-{i:04d}"[:63],
                    workload_type=kind,
                    model=name,
                    gpus=gpus,
                    memory_mib=rng.choice((8192, 16384, 24576)),
                    precision="fp16",
                    backends=("cuda", "vulkan", "metal") if llm else ("cuda", "vulkan"),
                    work=work,
                ),
            )
        )
    return jobs


class _Recorder:
    """The Q-policy, with every decision and the policy status after every event kept."""

    name = "learned"

    def __init__(self, policy: qpolicy.QPolicy) -> None:
        self.policy = policy
        self.placed: dict[str, dict[str, Any]] = {}
        """Workload UID -> its decision record."""
        self.rewards: dict[str, float] = {}
        self.statuses: list[tuple[str, str, dict[str, Any]]] = []
        """(event, uid, policy status) in the order events happened."""

    def choose(self, workload: model.Workload, view: fleet.View, rng: random.Random):
        choice = self.policy.choose(workload, view, rng)
        f = view.fleet
        node_of = f.row_node[view.rows]
        values: dict[str, float] = {}
        for n, v in zip(node_of.tolist(), choice.values.tolist(), strict=True):
            name = f.nodes[n].name
            values[name] = max(v, values.get(name, -np.inf))
        chosen = f.nodes[int(f.row_node[choice.row])].name
        self.placed[workload.uid] = convert.decision(
            choice.mode,
            chosen,
            values,
            scoring.node_scores(values, chosen),
            self.policy.version,
            f"Q-policy {choice.mode} among {len(values)} feasible nodes",
        )
        self._status("decide", workload.uid)
        return choice

    def observe(self, outcome: model.Outcome) -> bool:
        learned = self.policy.observe(outcome)
        if learned:
            self.rewards[outcome.uid] = round(self.policy.recent_rewards[-1], 4)
        self._status("learn", outcome.uid)
        return learned

    def _status(self, event: str, uid: str) -> None:
        self.statuses.append(
            (event, uid, convert.policy_status(self.policy, names.STATE_CONFIGMAP, ""))
        )


class SimSource:
    """Plays back a simulated run of ``nodes`` at ``speed`` simulated seconds per second.

    ``at_s`` freezes the clock at that simulated second (tests and snapshots).
    """

    namespace = NAMESPACE

    def __init__(
        self,
        nodes: list[model.Node],
        table: hardware.ThroughputTable,
        *,
        title: str = "simulation",
        jobs: list[simulator.Job] | None = None,
        seed: int = 0,
        speed: float = 30.0,
        at_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.title = title
        self.nodes = list(nodes)
        jobs = (
            jobs if jobs is not None else stream(table, {n.device_class for n in nodes}, seed, 400)
        )
        scenario = simulator.Scenario(tuple(self.nodes), tuple(jobs), table)
        recorder = _Recorder(qpolicy.QPolicy())
        result = simulator.simulate(scenario, lambda _: recorder, seed)
        self.jobs = {j.workload.uid: j for j in jobs}
        self.records = {r.uid: r for r in result.records}
        self.placed, self.rewards = recorder.placed, recorder.rewards
        times = []
        for event, uid, _ in recorder.statuses:
            r = self.records.get(uid)
            times.append((r.start_s if event == "decide" else r.finish_s) if r else float("inf"))
        order = sorted(range(len(times)), key=lambda i: (times[i], i))
        self._status_times = [times[i] for i in order]
        self._statuses = [recorder.statuses[i][2] for i in order]
        self._changes = sorted(
            {j.arrival_s for j in jobs}
            | {r.start_s for r in result.records}
            | {r.finish_s for r in result.records}
        )
        self.end_s = self._changes[-1]
        self._speed, self._at, self._clock = speed, at_s, clock
        self._t0 = clock()
        ready = {"conditions": [{"type": "Ready", "status": "True"}]}
        self._k8s_nodes = [
            {**k, "status": {**k["status"], **ready}} for k in map(convert.fake_node, self.nodes)
        ]

    def start(self) -> None:
        """Start the simulated clock."""
        self._t0 = self._clock()

    def stop(self) -> None:
        """Nothing runs in the background."""

    def now_s(self) -> float:
        """Simulated seconds since the start of the run."""
        if self._at is not None:
            return self._at
        return min((self._clock() - self._t0) * self._speed, self.end_s)

    def version(self) -> int:
        """Changes on every arrival, start and finish, and every 10 simulated seconds."""
        t = self.now_s()
        return bisect.bisect_right(self._changes, t) * 1_000_000 + int(t // 10)

    def health(self) -> Health:
        """A simulation is always reachable."""
        return Health("connected")

    def objects(self) -> Objects:
        """The cluster's objects at the current simulated time."""
        t = self.now_s()
        arrived = [j for j in self.jobs.values() if j.arrival_s <= t]
        running = [
            (self.records[j.workload.uid], j.workload)
            for j in arrived
            if j.workload.uid in self.records
            and self.records[j.workload.uid].start_s <= t < self.records[j.workload.uid].finish_s
        ]
        events: list[Obj] = []
        workloads = [self._workload(j, t, events) for j in arrived]
        i = bisect.bisect_right(self._status_times, t)
        policy = {
            "metadata": {"name": names.POLICY_NAME},
            "spec": {"mode": "active"},
            "status": {**self._statuses[i - 1], "lastUpdated": iso(t)} if i else {},
        }
        return Objects(
            SIM_EPOCH + t,
            workloads,
            [self._gpunode(n, running, t) for n in self.nodes],
            self._k8s_nodes,
            policy,
            events,
        )

    def _workload(self, job: simulator.Job, t: float, events: list[Obj]) -> Obj:
        w = job.workload
        gw: Obj = {
            "apiVersion": names.API_VERSION,
            "kind": "GpuWorkload",
            "metadata": {
                "name": w.uid,
                "namespace": NAMESPACE,
                "creationTimestamp": iso(job.arrival_s),
            },
            "spec": {
                "workloadType": w.workload_type,
                "model": w.model,
                "gpus": w.gpus,
                "memoryMiB": w.memory_mib,
                "backends": list(w.backends),
                "priority": w.priority,
            },
        }
        r = self.records.get(w.uid)
        if r is None or r.start_s > t:
            gw["status"] = {"phase": "Scheduling", "attempts": 1}
            return gw
        status: Obj = {
            "phase": "Running",
            "attempts": 1,
            "node": r.node,
            "backend": r.backend,
            "decision": self.placed[w.uid],
            "startedAt": iso(r.start_s),
            "conditions": [_condition("Scheduled", "Placed", r.start_s)],
        }
        events.append(_event(w.uid, "Scheduled", f"placed on {r.node} ({r.mode})", r.start_s))
        if r.finish_s <= t:
            status.update(
                phase="Succeeded",
                finishedAt=iso(r.finish_s),
                durationSeconds=round(r.finish_s - r.start_s, 1),
            )
            if w.uid in self.rewards:
                status["reward"] = self.rewards[w.uid]
            status["conditions"].append(_condition("Completed", "Succeeded", r.finish_s))
            events.append(_event(w.uid, "Completed", "succeeded", r.finish_s))
        gw["status"] = status
        return gw

    def _gpunode(
        self,
        node: model.Node,
        running: list[tuple[simulator.JobRecord, model.Workload]],
        t: float,
    ) -> Obj:
        busy: dict[int, model.Workload] = {}
        for _, w in sorted(
            (x for x in running if x[0].node == node.name), key=lambda x: x[0].start_s
        ):
            free = [i for i in range(node.devices) if i not in busy]
            for i in free[: max(w.gpus, 1)]:
                busy[i] = w
        backends: dict[str, Any] = {}
        for backend in node.backends:
            devices = []
            for i in range(node.devices if backend != "cpu" else 0):
                w = busy.get(i)
                load = 0.0 if w is None else 0.45 + 0.5 * w.compute_intensity
                total = node.memory_mib_per_device
                devices.append(
                    {
                        "index": i,
                        "uuid": f"SIM-{node.name}-{i}",
                        "name": node.device_class.upper(),
                        "memoryMiB": total,
                        "usedMiB": 0 if w is None else min(w.memory_mib, total),
                        "utilization": round(load, 3),
                        "temperatureC": round(32 + 50 * load, 1),
                        "healthy": True,
                    }
                )
            backends[backend] = {"available": True, "healthy": True, "devices": devices}
        return {
            "metadata": {"name": node.name},
            "status": {
                "summary": {
                    "backends": ",".join(node.backends),
                    "devices": node.devices,
                    "healthy": node.devices,
                },
                "backends": backends,
                "lastProbeTime": iso(t - t % 10),
            },
        }


def _condition(kind: str, reason: str, t: float) -> Obj:
    return {"type": kind, "status": "True", "reason": reason, "lastTransitionTime": iso(t)}


def _event(uid: str, reason: str, message: str, t: float) -> Obj:
    return {
        "type": "Normal",
        "reason": reason,
        "message": message,
        "lastTimestamp": iso(t),
        "involvedObject": {"kind": "GpuWorkload", "namespace": NAMESPACE, "name": uid},
    }
