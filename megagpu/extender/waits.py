"""Predictions and waiting in the extender (DESIGN 4): what ``core.learned.assess`` needs.

``Jobs`` tracks the megagpu pods bound to nodes (workload, node, backend, start, prediction),
fed by the pod informer or by snapshot-mode bind. ``Waits`` answers filter's question: should
this pod stay pending for a busy, faster node? The wait is bounded by ``Settings.max_wait_s``
from the pod's first wait (the earlier of what this process saw and the pod's
``megagpu.io/waiting-since`` annotation, which the operator writes once, so a restart does not
reset it), by the pod's own predicted run time on the best free node (``Settings.wait_share``)
and by the workload's deadline (``megagpu.io/deadline``). The operator's start timeout runs
from the bind, not through a deliberate wait.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from megagpu.core import fleet, learned, model, ports, predict, qpolicy, waiting
from megagpu.kube import convert, names, selects

REMEMBERED = 10_000
"""First-wait times kept for pods still pending (oldest forgotten first)."""


class Job(NamedTuple):
    """A megagpu pod bound to a node."""

    node: str
    backend: str
    workload: model.Workload
    started_s: float
    """Wall-clock (epoch) seconds when it was bound or started."""
    prediction: model.Prediction | None


def _epoch(text: Any) -> float | None:
    found = convert.parse_time(text)
    return found.timestamp() if found is not None and found.tzinfo is not None else None


def job_from_pod(pod: dict[str, Any], now_s: float) -> Job | None:
    """The job a bound pod is, from its annotations; None when unbound or garbled."""
    meta, spec, st = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    node = spec.get("nodeName")
    if not node:
        return None
    try:
        workload = convert.workload_from_pod(pod)
    except convert.ConvertError:
        return None
    annotations = meta.get("annotations") or {}
    scheduled = next(
        (
            c.get("lastTransitionTime")
            for c in st.get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("status") == "True"
        ),
        None,
    )
    started = _epoch(st.get("startTime")) or _epoch(scheduled) or now_s
    backend = str(annotations.get(names.ANN_ASSIGNED_BACKEND) or "")
    try:
        record = json.loads(annotations.get(names.ANN_DECISION) or "{}")
    except ValueError:
        record = None
    return Job(str(node), backend, workload, started, recorded(record))


def recorded(record: Any) -> model.Prediction | None:
    """The prediction a decision record carries, if usable."""
    if not isinstance(record, dict):
        return None
    seconds, sigma = record.get("predictedSeconds"), record.get("predictedSigma")
    if not isinstance(seconds, int | float) or not isinstance(sigma, int | float):
        return None
    if not (math.isfinite(seconds) and seconds > 0 and math.isfinite(sigma) and sigma >= 0):
        return None
    return model.Prediction(float(seconds), float(sigma), "recorded")


def rows_on(f: fleet.Fleet, w: model.Workload, free: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Rows of ``nodes`` (fleet indices) where ``w`` fits now, on healthy nodes only.

    ``feasible_rows`` checks backend, memory and free devices as filter does; health and being
    asked about are the node-level rest of filter's checks.
    """
    wanted = np.zeros(len(f.nodes), dtype=bool)
    wanted[nodes] = True
    wanted &= f.node_healthy
    rows = f.feasible_rows(w, free)
    return rows[wanted[f.row_node[rows]]]


def busy_elsewhere(
    f: fleet.Fleet,
    w: model.Workload,
    pod: dict[str, Any],
    free: np.ndarray,
    asked: np.ndarray,
    node_object: Callable[[str], dict[str, Any] | None],
) -> np.ndarray:
    """Busy nodes kube-scheduler did not ask about that the pod could run on once they free.

    kube-scheduler's own filters drop a node whose ``megagpu.io/gpu`` is all allocated before
    the extender is asked; these are the nodes that fit the workload (backend, devices,
    memory, health) but lack free devices, are not in ``asked`` (fleet indices), and whose
    Node object (``node_object``; None: unknown, skipped) the pod's selectors allow.
    """
    need = max(w.gpus, 1)
    capacity = np.where(free < need, np.iinfo(np.int32).max, 0)
    rows = f.feasible_rows(w, capacity)
    wanted = f.node_healthy & (f.node_devices >= w.gpus)
    wanted[asked] = False
    nodes = np.unique(f.row_node[rows[wanted[f.row_node[rows]]]])
    keep = []
    for index in nodes.tolist():
        found = node_object(f.node_names[index])
        if found is not None and selects.selects(pod, found):
            keep.append(index)
    return np.asarray(keep, dtype=np.int64)


class Jobs:
    """Bound megagpu pods by node; thread-safe (informer threads write, requests read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._on: dict[str, dict[str, Job]] = {}
        self._node_of: dict[str, str] = {}
        self._changes = 0
        self._changed: dict[str, int] = {}
        """Node -> the change count when its jobs last changed (never reused)."""

    def add(self, uid: str, job: Job) -> None:
        """Record that pod ``uid`` runs ``job``."""
        with self._lock:
            self._drop(uid)
            self._on.setdefault(job.node, {})[uid] = job
            self._node_of[uid] = job.node
            self._touch(job.node)

    def _touch(self, node: str) -> None:
        self._changes += 1
        self._changed[node] = self._changes

    def known(self, uid: str) -> bool:
        """Whether pod ``uid`` is recorded."""
        return uid in self._node_of

    def remove(self, uid: str) -> None:
        """Forget pod ``uid`` (it ended or went away)."""
        with self._lock:
            self._drop(uid)

    def _drop(self, uid: str) -> None:
        node = self._node_of.pop(uid, None)
        if node is not None:
            jobs = self._on.get(node, {})
            jobs.pop(uid, None)
            if not jobs:
                self._on.pop(node, None)
            self._touch(node)

    def on(self, node: str) -> list[Job]:
        """The jobs on ``node``."""
        return self.version_on(node)[1]

    def version_on(self, node: str) -> tuple[int, list[Job]]:
        """(a number that changes whenever the jobs on ``node`` change, those jobs)."""
        with self._lock:
            return self._changed.get(node, 0), list(self._on.get(node, {}).values())


RunningCache = dict[tuple[int, bool], tuple[int, list[fleet.Running]]]
"""(node index, GPU jobs?) -> (the jobs' version, their ``fleet.Running``), for one fleet."""


class _RunningOn(Mapping[int, Sequence[fleet.Running]]):
    """Node index -> its running jobs as ``fleet.Running``, built only for nodes asked about."""

    def __init__(self, jobs: Jobs, f: fleet.Fleet, gpus: bool, cache: RunningCache) -> None:
        self._jobs, self._fleet, self._gpus, self._cache = jobs, f, gpus, cache

    def __getitem__(self, node: int) -> Sequence[fleet.Running]:
        version, jobs = self._jobs.version_on(self._fleet.node_names[node])
        kept = self._cache.get((node, self._gpus))
        if kept is not None and kept[0] == version:
            return kept[1]
        found = self._build(node, jobs)
        self._cache[(node, self._gpus)] = (version, found)
        return found

    def _build(self, node: int, jobs: list[Job]) -> list[fleet.Running]:
        f = self._fleet
        rows = np.flatnonzero(f.row_node == node)
        if len(rows) == 0:
            return []
        out = []
        for job in jobs:
            if (job.workload.gpus > 0) != self._gpus:
                continue  # devices and CPU slots free independently
            match = [r for r in rows.tolist() if f.row_backend[r] == job.backend]
            row = match[0] if match else int(rows[0])
            out.append(
                fleet.Running(
                    job.workload, row, job.started_s, max(job.workload.gpus, 1), job.prediction
                )
            )
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


class Waits:
    """Predicted run times per candidate and the wait decision, for filter and prioritize."""

    def __init__(
        self,
        jobs: Jobs | None = None,
        settings: waiting.Settings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jobs = jobs or Jobs()
        self.settings = settings or waiting.Settings()
        self.clock = clock
        """Wall clock (epoch seconds): pods' start times and annotations are on it."""
        self._first: OrderedDict[str, float] = OrderedDict()
        self._memo: learned.Memo = {}
        self._free_times = waiting.FreeTimes()
        self._speeds: dict[tuple[str, str], predict.Speeds] = {}
        self._memo_of: tuple[object, int, object] = (None, -1, None)
        """The policy, its version and the fleet the three memos above hold for."""
        self._running: RunningCache = {}
        self._running_of: fleet.Fleet | None = None
        self._last: (
            tuple[model.Workload, qpolicy.QPolicy, int, fleet.Fleet, predict.Predictions] | None
        ) = None

    def predictions(
        self, policy: qpolicy.QPolicy, workload: model.Workload, f: fleet.Fleet
    ) -> predict.Predictions:
        """``predict.action_run_times`` of ``workload``, kept for the last workload asked."""
        last = self._last
        if (
            last is not None
            and last[0] is workload
            and last[1] is policy
            and last[2] == policy.version
            and last[3] is f
        ):
            return last[4]
        self._fresh(policy, f)

        def speeds(wkey: str, mkey: str) -> predict.Speeds:
            found = self._speeds.get((wkey, mkey))
            if found is None:
                found = self._speeds[(wkey, mkey)] = predict.action_speeds(policy, wkey, mkey, f)
            return found

        found = predict.action_run_times(policy, workload, f, speeds)
        self._last = (workload, policy, policy.version, f, found)
        return found

    def _fresh(self, policy: qpolicy.QPolicy, f: fleet.Fleet) -> None:
        """Forget what was kept for another policy, version or fleet."""
        of = self._memo_of
        if of[0] is not policy or of[1] != policy.version or of[2] is not f:
            self._memo.clear()
            self._free_times.clear()
            self._speeds.clear()
            self._memo_of = (policy, policy.version, f)

    def reason(
        self,
        policy: qpolicy.QPolicy,
        workload: model.Workload,
        pod: dict[str, Any],
        f: fleet.Fleet,
        free: np.ndarray,
        passed: np.ndarray,
        busy_nodes: Callable[[], np.ndarray],
    ) -> str | None:
        """Why the pod should stay pending for a busy node, or None to place it now.

        ``passed``: fleet indices of the nodes filter keeps; ``busy_nodes``: those that fit the
        pod but lack free devices (or CPU slots) now, asked only when a wait is possible.
        """
        left, waited = self.wait_left(policy, workload, pod, f)
        if left <= 0:
            return None
        busy = busy_nodes()
        if len(busy) == 0:
            return None
        capacity = np.zeros(len(f.nodes), dtype=np.int64)
        capacity[busy] = np.iinfo(np.int32).max
        rows = rows_on(f, workload, free, passed)
        found = self.assess(
            policy, workload, f, free, rows, f.feasible_rows(workload, capacity), left, waited
        )
        return found.reason if found.wait else None

    def top(
        self,
        policy: qpolicy.QPolicy,
        workload: model.Workload,
        f: fleet.Fleet,
        positions: Mapping[str, int],
        rows: np.ndarray,
        choice: ports.Choice,
        names_: list[str],
    ) -> dict[str, model.Prediction | None]:
        """Predicted run time on the chosen row's node and on each named node (its best row)."""
        predicted = self.predictions(policy, workload, f)
        if np.isnan(predicted.seconds).all():
            return {}
        out = {f.node_names[int(f.row_node[choice.row])]: predicted.on(f, choice.row)}
        row_nodes = f.row_node[rows]
        for name in names_:
            if name not in out and (position := positions.get(name)) is not None:
                mine = np.flatnonzero(row_nodes == position)
                if len(mine):
                    best = int(rows[mine[int(np.argmax(choice.values[mine]))]])
                    out[name] = predicted.on(f, best)
        return out

    def on_node(
        self,
        policy: qpolicy.QPolicy,
        workload: model.Workload,
        f: fleet.Fleet,
        positions: Mapping[str, int],
        node: str,
        backend: str,
    ) -> model.Prediction | None:
        """The predicted run time of ``workload`` on ``node`` with ``backend``."""
        position = positions.get(node)
        if position is None:
            return None
        rows = np.flatnonzero((f.row_node == position) & (f.row_backend == backend))
        if len(rows) == 0:
            return None
        return self.predictions(policy, workload, f).on(f, int(rows[0]))

    def wait_left(
        self,
        policy: qpolicy.QPolicy,
        workload: model.Workload,
        pod: dict[str, Any],
        f: fleet.Fleet,
    ) -> tuple[float, float]:
        """How much longer the pod may be kept pending (0: place it now), and how long it has.

        0 also when the workload has no prediction (no size, or nothing learned): it never
        waits. A garbled ``waiting-since`` or ``deadline`` annotation counts as a bound passed:
        the pod is placed rather than kept waiting on a time nobody can read.
        """
        if policy.params.mode == "shadow":
            return 0.0, 0.0
        if np.isnan(self.predictions(policy, workload, f).seconds).all():
            return 0.0, 0.0
        now = self.clock()
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        first = self._first.get(workload.uid, now)
        if names.ANN_WAITING_SINCE in annotations:
            since = _epoch(annotations[names.ANN_WAITING_SINCE])
            if since is None:
                return 0.0, 0.0
            first = min(first, since)
        left = self.settings.max_wait_s - (now - first)
        if names.ANN_DEADLINE in annotations:
            deadline = _epoch(annotations[names.ANN_DEADLINE])
            left = min(left, deadline - now) if deadline is not None else 0.0
        return max(left, 0.0), max(now - first, 0.0)

    def assess(
        self,
        policy: qpolicy.QPolicy,
        workload: model.Workload,
        f: fleet.Fleet,
        free: np.ndarray,
        rows: np.ndarray,
        busy_rows: np.ndarray,
        wait_left_s: float,
        waited_s: float,
    ) -> waiting.Assessment:
        """Predictions over free ``rows`` and ``busy_rows``, and whether to wait.

        Waiting starts the pod's wait clock (``placed`` forgets it).
        """
        self._fresh(policy, f)
        if self._running_of is not f:
            self._running.clear()
            self._running_of = f
        view = fleet.View(
            f,
            rows,
            free,
            busy_rows=busy_rows,
            running=_RunningOn(self.jobs, f, workload.gpus > 0, self._running),
            now_s=self.clock(),
            wait_left_s=wait_left_s,
            waited_s=waited_s,
        )
        predicted = self.predictions(policy, workload, f)
        found = learned.assess(
            policy, workload, view, self.settings, self._memo, predicted, self._free_times
        )
        if found.wait:
            self._first.setdefault(workload.uid, view.now_s)
            self._first.move_to_end(workload.uid)
            while len(self._first) > REMEMBERED:
                self._first.popitem(last=False)
        return found

    def placed(self, uid: str) -> None:
        """The pod was bound: its wait is over."""
        self._first.pop(uid, None)
