"""Discrete-event cluster simulation: one placement per job, priority queue with backfill.

Every policy replays the same arrivals; the run is deterministic for a seed. A job runs on one
node for ``work / throughput`` seconds, where the throughput comes from the hardware model and
may change mid-run (a device class that silently slows down). Nodes may join mid-run.

A policy that waits (``waits = True``) may keep a job pending for a busy node; the job stays in
the queue and is offered again whenever something happens (a job ends or arrives, a node joins),
as kube-scheduler retries an unschedulable pod. The bound is the simulator's: ``max_wait_s``
from the job's first wait (and its deadline); once it has passed the job is offered no busy
rows, and a wait then is an error (``ports.WaitError``).

Within a priority the queue is in arrival order, as kube-scheduler's PrioritySort keeps it,
unless the policy ranks jobs (``queue_rank``, smaller first: learned's predicted size bucket, the
PriorityClass the operator gives the pod) or the caller passes ``queue_order``.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from megagpu.core import baselines, features, fleet, model, ports, waiting
from megagpu.sim import hardware


@dataclass(frozen=True)
class Job:
    """A workload and when it arrives."""

    arrival_s: float
    workload: model.Workload
    work_source: str = "reported"
    """What the learner is told when the job ends: its true work (``reported``), its
    ``workload.declared`` size (``declared``, which may be off) or nothing (``none``)."""

    def __post_init__(self) -> None:
        if self.work_source not in model.WORK_SOURCES:
            raise model.ValidationError(f"work_source must be one of {model.WORK_SOURCES}")
        if self.work_source == "declared" and self.workload.declared is None:
            raise model.ValidationError(f"job {self.workload.uid}: declared but no size given")

    @property
    def told_work(self) -> float | None:
        """The size the learner is told, or None."""
        if self.work_source == "reported":
            return self.workload.work
        if self.work_source == "declared" and self.workload.declared is not None:
            return self.workload.declared.amount
        return None


@dataclass(frozen=True)
class Slowdown:
    """From ``at_s`` on, every device of ``device_class`` runs at ``factor`` of its speed."""

    at_s: float
    device_class: str
    factor: float


@dataclass(frozen=True)
class Scenario:
    """Everything a run needs except the policy and the seed."""

    nodes: tuple[model.Node, ...]
    jobs: tuple[Job, ...]
    table: hardware.ThroughputTable
    slowdowns: tuple[Slowdown, ...] = ()
    joins: dict[str, float] = field(default_factory=dict)
    """Node name -> time it joins; other nodes are there from the start."""

    def __post_init__(self) -> None:
        if not self.jobs:
            raise model.ValidationError("the trace is empty: a simulation needs at least one job")
        if not self.nodes:
            raise model.ValidationError("the cluster has no nodes")


class JobRecord(NamedTuple):
    """What happened to one job."""

    uid: str
    arrival_s: float
    start_s: float
    finish_s: float
    node: str
    backend: str
    device_class: str
    mode: str
    derived: bool
    order: int
    """Position in decision order."""
    deadline_missed: bool | None
    """None when the job had no deadline."""
    slots: int
    placement_ratio: float
    """Run time on the chosen device over run time on the fastest free one at that moment (>= 1)."""
    predicted_s: float | None = None
    """The policy's predicted run time on the chosen device, if it had one."""
    waited_s: float = 0.0
    """Time from the job's first wait (a policy kept it pending) to its start; 0 if it never did."""


class RunResult(NamedTuple):
    """A finished run."""

    policy: str
    seed: int
    records: list[JobRecord]
    available_slot_seconds: float
    unplaced: int


Progress = Callable[[int, int], None]


class _Placement(NamedTuple):
    row: int
    start_s: float
    mode: str
    derived: bool
    order: int
    context: int
    ratio: float
    prediction: model.Prediction | None
    waited_s: float


class _Running(NamedTuple):
    finish_s: float
    seq: int
    node: int
    slots: int
    job: int


class _Ahead(Mapping[int, Sequence[fleet.Running]]):
    """Pending jobs ahead in one scheduling pass, in queue order, per node on demand.

    A blocked job (no room now) may take any node it fits; a waiting job only the node it
    waits for. Lists are built only for the nodes a waiting policy asks about.
    """

    def __init__(self, nodes: int, now_s: float) -> None:
        self._nodes, self._now = nodes, now_s
        self._entries: list[tuple[model.Workload, np.ndarray] | tuple[int, fleet.Running]] = []

    def block(self, workload: model.Workload, row_nodes: np.ndarray, rows: np.ndarray) -> None:
        """A job that fits ``rows`` (on ``row_nodes``) but found none free."""
        row_of = np.full(self._nodes, -1, dtype=np.int64)
        row_of[row_nodes[::-1]] = rows[::-1]  # the first row of each node
        self._entries.append((workload, row_of))

    def wait(self, node: int, job: fleet.Running) -> None:
        """A job that waits for ``node``."""
        self._entries.append((node, job))

    def __getitem__(self, node: int) -> list[fleet.Running]:
        out = []
        for key, value in self._entries:
            if isinstance(value, fleet.Running):
                if key == node:
                    out.append(value)
            elif isinstance(key, model.Workload) and value[node] >= 0:
                need = max(key.gpus, 1)
                out.append(fleet.Running(key, int(value[node]), self._now, need))
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._nodes))

    def __len__(self) -> int:
        return self._nodes


PolicyFactory = Callable[[baselines.ThroughputFn], ports.Policy]
"""Builds a policy, given the true current throughput (only the oracle uses it)."""
QueueOrder = Callable[[ports.Policy, Job], float]
"""A job's rank in the queue within its priority (smaller first, then arrival), given the run's
policy; it is read once, when the job arrives."""


def simulate(
    scenario: Scenario,
    make_policy: PolicyFactory,
    seed: int,
    *,
    backfill_window: int = 256,
    max_wait_s: float = waiting.Settings().max_wait_s,
    progress: Progress | None = None,
    queue_order: QueueOrder | None = None,
) -> RunResult:
    """Run the policy over ``scenario`` and return a record per job.

    ``max_wait_s``: how long a waiting policy may keep a job pending (from its first wait).
    ``queue_order``: the job's rank within its priority (None: the policy's ``queue_rank``, else
    arrival order).
    """
    rng = random.Random(seed)
    f = fleet.Fleet.build(scenario.nodes)
    clock = [0.0]

    def true_throughput(workload: model.Workload, row: int) -> float:
        thr, _ = scenario.table.arrays(f, workload.model, workload.gpus)
        device = scenario.nodes[int(f.row_node[row])].device_class
        return float(thr[row]) * speed_factor(device, clock[0])

    policy = make_policy(true_throughput)
    waits = bool(getattr(policy, "waits", False))
    ranks = getattr(policy, "queue_rank", None)
    rank_of = queue_order or (None if ranks is None else lambda _, job: ranks(job.workload))
    running_on: dict[int, list[fleet.Running]] = {}
    jobs_running: dict[int, fleet.Running] = {}
    first_wait: dict[int, float] = {}
    wakes: list[float] = []
    join_at = np.asarray([scenario.joins.get(n.name, 0.0) for n in scenario.nodes])
    slots = np.asarray([n.slots for n in scenario.nodes], dtype=np.int64)
    free = np.where(join_at <= 0, slots, 0)
    pending_joins = sorted((t, i) for i, t in enumerate(join_at) if t > 0)
    jobs = sorted(range(len(scenario.jobs)), key=lambda i: (scenario.jobs[i].arrival_s, i))
    queue: list[tuple[int, float, float, int]] = []
    running: list[_Running] = []
    records: list[JobRecord | None] = [None] * len(scenario.jobs)
    placed: dict[int, _Placement] = {}
    row_device = np.asarray([scenario.nodes[i].device_class for i in f.row_node])
    seq = order = next_arrival = 0
    now = 0.0

    def speed_factor(device: str, t: float) -> float:
        factor = 1.0
        for s in scenario.slowdowns:
            if s.device_class == device and t >= s.at_s:
                factor *= s.factor
        return factor

    def row_factors(t: float) -> np.ndarray:
        factors = np.ones(len(row_device))
        for s in scenario.slowdowns:
            if t >= s.at_s:
                factors[row_device == s.device_class] *= s.factor
        return factors

    def finish(item: _Running) -> None:
        free[item.node] += item.slots
        running_on[item.node].remove(jobs_running.pop(item.job))
        p = placed.pop(item.job)
        job = scenario.jobs[item.job]
        node = scenario.nodes[item.node]
        deadline = job.workload.deadline_s
        missed = None if deadline is None else item.finish_s > job.arrival_s + deadline
        records[item.job] = JobRecord(
            job.workload.uid,
            job.arrival_s,
            p.start_s,
            item.finish_s,
            node.name,
            f.row_backend[p.row],
            node.device_class,
            p.mode,
            p.derived,
            p.order,
            missed,
            item.slots,
            p.ratio,
            None if p.prediction is None else p.prediction.seconds,
            p.waited_s,
        )
        policy.observe(
            model.Outcome(
                uid=job.workload.uid,
                workload=job.workload,
                node=node.name,
                backend=f.row_backend[p.row],
                device_class=node.device_class,
                duration_s=item.finish_s - p.start_s,
                succeeded=True,
                deadline_missed=bool(missed),
                context=p.context,
                work=job.told_work,
                work_source=job.work_source,
            )
        )

    def waiting_view(index: int, rows: np.ndarray, queued: int, ahead: _Ahead) -> fleet.View:
        """The view of a waiting policy: busy rows, what runs there, and the wait left."""
        job = scenario.jobs[index]
        workload = job.workload
        left = max_wait_s - (now - first_wait.get(index, now))
        if workload.deadline_s is not None:
            left = min(left, job.arrival_s + workload.deadline_s - now)
        busy = np.zeros(0, dtype=np.int64)
        if left > 0:
            thr, _ = scenario.table.arrays(f, workload.model, workload.gpus)
            fits = f.feasible_rows(workload, slots)
            busy = np.setdiff1d(fits[thr[fits] > 0], rows, assume_unique=True)
        return fleet.View(
            f,
            rows,
            free,
            queue_length=queued,
            busy_rows=busy,
            running=running_on,
            ahead=ahead,
            now_s=now,
            wait_left_s=max(left, 0.0) if len(busy) else 0.0,
            waited_s=now - first_wait.get(index, now),
        )

    def schedule() -> None:
        nonlocal seq, order
        max_free = int(free.max()) if len(free) else 0
        kept: list[tuple[int, float, float, int]] = []
        scanned = 0
        ahead = _Ahead(len(scenario.nodes), now)

        def blocked(workload: model.Workload) -> None:
            """A job ahead that found no room: it may take any node it fits when that frees."""
            thr, _ = scenario.table.arrays(f, workload.model, workload.gpus)
            fits = f.feasible_rows(workload, slots)
            fits = fits[thr[fits] > 0]
            ahead.block(workload, f.row_node[fits], fits)

        for entry in queue:
            index = entry[3]
            workload = scenario.jobs[index].workload
            need = max(workload.gpus, 1)
            if scanned >= backfill_window or need > max_free:
                if waits and scanned < backfill_window:
                    blocked(workload)
                kept.append(entry)
                continue
            scanned += 1
            thr, derived = scenario.table.arrays(f, workload.model, workload.gpus)
            rows = f.feasible_rows(workload, free)
            rows = rows[thr[rows] > 0]
            if len(rows) == 0:
                if waits:
                    blocked(workload)
                kept.append(entry)
                continue
            view = (
                waiting_view(index, rows, len(queue) - 1, ahead)
                if waits
                else fleet.View(f, rows, free, queue_length=len(queue) - 1)
            )
            choice = policy.choose(workload, view, rng)
            if choice.wait:
                if view.wait_left_s <= 0:
                    raise ports.WaitError(f"{policy.name} kept {workload.uid} past its wait bound")
                # the job's own bound (its predicted run time) has no wake of its own: the next
                # event retries it
                if index not in first_wait:
                    first_wait[index] = now
                    heapq.heappush(wakes, now + max_wait_s)
                job_ahead = fleet.Running(workload, choice.row, now, need, choice.prediction)
                ahead.wait(int(f.row_node[choice.row]), job_ahead)
                kept.append(entry)
                continue
            node_index = int(f.row_node[choice.row])
            share = free[node_index] / max(slots[node_index], 1)
            context = int(features.context_buckets(np.asarray([share]), len(queue) - 1)[0])
            free[node_index] -= need
            max_free = int(free.max())
            factors = row_factors(now)
            rates = thr[rows] * factors[rows]
            rate = thr[choice.row] * factors[choice.row]
            duration = workload.work / rate
            placed[index] = _Placement(
                choice.row,
                now,
                choice.mode,
                bool(derived[choice.row]),
                order,
                context,
                float(rates.max() / rate),
                choice.prediction,
                now - first_wait.get(index, now),
            )
            order += 1
            heapq.heappush(running, _Running(now + duration, seq, node_index, need, index))
            job_running = fleet.Running(workload, choice.row, now, need, choice.prediction)
            jobs_running[index] = job_running
            running_on.setdefault(node_index, []).append(job_running)
            seq += 1
        queue[:] = kept

    total = len(jobs)
    done = 0
    while next_arrival < total or running or pending_joins:
        candidates = []
        if next_arrival < total:
            candidates.append(scenario.jobs[jobs[next_arrival]].arrival_s)
        if running:
            candidates.append(running[0].finish_s)
        if pending_joins:
            candidates.append(pending_joins[0][0])
        if wakes:
            candidates.append(wakes[0])
        now = clock[0] = min(candidates)
        while wakes and wakes[0] <= now:
            heapq.heappop(wakes)
        while running and running[0].finish_s <= now:
            finish(heapq.heappop(running))
            done += 1
            if progress is not None:
                progress(done, total)
        while pending_joins and pending_joins[0][0] <= now:
            joined = pending_joins.pop(0)[1]
            free[joined] = slots[joined]
        while next_arrival < total and scenario.jobs[jobs[next_arrival]].arrival_s <= now:
            index = jobs[next_arrival]
            job = scenario.jobs[index]
            rank = 0.0 if rank_of is None else rank_of(policy, job)
            bisect.insort(queue, (-job.workload.priority_rank, rank, job.arrival_s, index))
            next_arrival += 1
        schedule()
        if next_arrival >= total and not running and not pending_joins and queue:
            break
    finished = [r for r in records if r is not None]
    end = max((r.finish_s for r in finished), default=0.0)
    start = min(j.arrival_s for j in scenario.jobs)
    available = float(np.sum(slots * np.maximum(end - np.maximum(join_at, start), 0.0)))
    return RunResult(policy.name, seed, finished, available, len(queue))
