"""The extender's decisions: filter, prioritize and bind with the Q-policy (DESIGN 4, 9.1, 9.2).

Filter and prioritize have no side effects on the cluster; prioritize remembers its choice and
holds the devices tentatively, so that filters of other pods count them. Bind makes one write
(a Binding whose annotations carry the decision and the devices) through an injected binder.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from megagpu.core import fleet, learned, model, ports, qpolicy, scoring, waiting
from megagpu.extender import ledger as ledger_mod
from megagpu.extender import protocol
from megagpu.extender import waits as waits_mod
from megagpu.kube import convert, names

REMEMBERED = 10_000
TOP = convert.DECISION_TOP
DECISION_MAX_BYTES = 8 * 1024
NOT_READY = "extender caches are not synced yet"
DECISION_KEYS = frozenset(
    (
        "mode",
        "score",
        "qValues",
        "alternatives",
        "policyVersion",
        "reason",
        "predictedSeconds",
        "predictedSigma",
    )
)
"""The keys of a decision record: exactly those of ``status.decision`` (DESIGN 9.2)."""
PASS, UNKNOWN, NO_BACKEND, TOO_FEW, LOW_MEMORY, UNHEALTHY, BUSY, WAIT = range(8)
PERMANENT = (NO_BACKEND, TOO_FEW, LOW_MEMORY)
"""Codes that go to FailedAndUnresolvableNodes: waiting cannot fix them."""


class BindConflict(Exception):
    """The pod is already bound; ``node`` says where."""

    def __init__(self, node: str) -> None:
        super().__init__(f"pod is already bound to {node}")
        self.node = node


Binder = Callable[[protocol.BindingArgs, dict[str, str]], Awaitable[None]]
"""Writes the Binding with these annotations; raises BindConflict when already bound."""


class PolicySource(Protocol):
    """The Q-policy currently loaded (one consistent version per request)."""

    def current(self) -> qpolicy.QPolicy:
        """The policy to decide with."""
        ...


@dataclass(frozen=True)
class Remembered:
    """What prioritize chose for a pod, for bind to compare against."""

    node: str
    backend: str
    mode: str
    values: dict[str, float]
    scores: dict[str, int]
    version: int
    workload: model.Workload
    reason: str = ""
    """Why, where the node is not simply the one of highest value: in shadow mode, what the
    learned policy would have done instead; the earliest finish over predicted or sampled
    speeds."""
    predictions: dict[str, model.Prediction | None] | None = None
    """Predicted run time on the chosen node and the top alternatives, where known."""


class Decided(NamedTuple):
    """Prioritize's answer for one pod and node list, and the state it was decided in."""

    workload: model.Workload
    node_names: tuple[str, ...]
    generation: int
    policy: qpolicy.QPolicy
    version: int
    answer: protocol.HostPriorities
    remembered: Remembered | None = None
    """What bind compares against (None when no node was feasible)."""


class Placement:
    """Decides where megagpu pods go; one per extender process."""

    def __init__(
        self,
        ledger: ledger_mod.Ledger,
        policies: PolicySource,
        binder: Binder,
        rng: random.Random | None = None,
        pod_lookup: Callable[[str], dict[str, Any] | None] = lambda uid: None,
        on_decision: Callable[[str, str], None] = lambda mode, backend: None,
        ready: Callable[[], bool] = lambda: True,
        waits: waits_mod.Waits | None = None,
        node_object: Callable[[str], dict[str, Any] | None] = lambda name: None,
    ) -> None:
        self.ledger = ledger
        self.policies = policies
        self.binder = binder
        self.rng = rng or random.Random()
        self.pod_lookup = pod_lookup
        """Finds a pod by UID in the informer cache (bind after a restart)."""
        self.remembered: OrderedDict[str, Remembered] = OrderedDict()
        self.workloads: OrderedDict[str, model.Workload] = OrderedDict()
        self.on_decision = on_decision
        """Called with (mode, backend) for every megagpu pod bound."""
        self.ready = ready
        """Whether the caches have synced; until then megagpu pods get an Error (fallback)."""
        self.waits = waits or waits_mod.Waits()
        """Predicted run times, running jobs and the wait decision."""
        self.node_object = node_object
        """A Node by name from the informer cache (labels, taints), for waiting's candidates."""
        self._prefixes_of: tuple[str, ...] | None = None
        self._fleet_prefixes = protocol.host_prefixes(())
        self._kept: tuple[dict[str, int] | None, tuple[str, ...], np.ndarray] = (
            None,
            (),
            np.empty(0),
        )
        """The last filter's positions map, kept names and their positions, for prioritize."""
        self._last_pod: tuple[tuple[Any, Any] | None, model.Workload | None] = (None, None)
        """(uid, resourceVersion) of the last pod converted, and its workload."""
        self._pending: tuple[model.Workload, tuple[str, ...]] | None = None
        """The pod and names the last filter kept, for ``prepare``."""
        self._prepared: Decided | None = None
        """Prioritize's answer decided by ``prepare`` ahead of the request."""

    # --- filter ------------------------------------------------------------------------
    def filter(self, args: protocol.ExtenderArgs) -> dict[str, Any]:
        """Keep every feasible node; give a reason for every other one."""
        if not convert.is_megagpu_pod(args.pod):
            return protocol.filter_result(list(args.node_names), {}, {})
        if not self.ready():
            return protocol.filter_result([], {}, {}, error=NOT_READY)
        try:
            workload = self._remember_workload(args.pod)
        except convert.ConvertError as e:
            return protocol.filter_result([], {}, {}, error=str(e))
        layout = self.ledger.layout()
        index, codes = self._check(workload, args.node_names, layout)
        names_ = args.node_names
        wait = self._waiting(workload, args.pod, layout, index, codes)
        if wait is not None:
            codes = np.where((codes == PASS) | (codes == BUSY), WAIT, codes)
        ok = codes == PASS
        passed = list(_named(names_, ok))
        self._kept = (layout.positions, tuple(passed), index[ok])
        self._pending = (workload, self._kept[1])
        failed: dict[str, str] = {}
        never: dict[str, str] = {}
        # one text for many nodes (every node when the pod waits; busy nodes by free count):
        # dict.fromkeys over the names, a third of filter's time at 1,000 nodes done per node
        if wait is not None:
            failed.update(dict.fromkeys(_named(names_, codes == WAIT), wait))
        busy = codes == BUSY
        if busy.any():
            free = _free(workload, layout)[index]
            for n in np.unique(free[busy]).tolist():
                group = busy & (free == n)
                text = _reason(BUSY, workload, int(index[np.argmax(group)]), layout)
                failed.update(dict.fromkeys(_named(names_, group), text))
        rest = np.flatnonzero((codes != PASS) & (codes != WAIT) & ~busy)
        for i, code, position in zip(
            rest.tolist(), codes[rest].tolist(), index[rest].tolist(), strict=True
        ):
            target = never if code in PERMANENT else failed
            target[names_[i]] = _reason(code, workload, position, layout)
        return protocol.filter_result(passed, failed, never)

    def _waiting(
        self,
        workload: model.Workload,
        pod: dict[str, Any],
        layout: ledger_mod.Layout,
        index: np.ndarray,
        codes: np.ndarray,
    ) -> str | None:
        """Why the pod stays pending for a busy, faster node; None when it should be placed."""
        passed = index[codes == PASS]
        if len(passed) == 0:
            return None
        f, policy, free = layout.fleet, self.policies.current(), _free(workload, layout)

        def busy() -> np.ndarray:
            asked = index[index >= 0]
            elsewhere = waits_mod.busy_elsewhere(f, workload, pod, free, asked, self.node_object)
            return np.union1d(index[codes == BUSY], elsewhere)

        return self.waits.reason(policy, workload, pod, f, free, passed, busy)

    def _remember_workload(self, pod: dict[str, Any]) -> model.Workload:
        """The pod's workload, remembered for bind.

        The last pod's workload is reused for the same pod version: prioritize follows filter.
        """
        meta = pod.get("metadata")
        version = (meta.get("uid"), meta.get("resourceVersion")) if isinstance(meta, dict) else None
        last_version, last = self._last_pod
        if version is not None and version[1] and version == last_version and last is not None:
            workload = last
        else:
            workload = convert.workload_from_pod(pod)
            self._last_pod = (version, workload)
        self.workloads[workload.uid] = workload
        self.workloads.move_to_end(workload.uid)
        while len(self.workloads) > REMEMBERED:
            self.workloads.popitem(last=False)
        return workload

    def _check(
        self, w: model.Workload, node_names: tuple[str, ...], layout: ledger_mod.Layout
    ) -> tuple[np.ndarray, np.ndarray]:
        """(fleet index or -1, check code) for every requested node, vectorized."""
        f, free = layout.fleet, _free(w, layout)
        index = _positions(node_names, layout)
        codes = np.full(len(node_names), UNKNOWN, dtype=np.int64)
        known = index >= 0
        at = index[known]
        ids = [model.BACKENDS.index(b) for b in acceptable(w)]
        checks = (
            (
                NO_BACKEND,
                ~f.node_backends[:, ids].any(axis=1)[at] if ids else np.ones(len(at), bool),
            ),
            (TOO_FEW, f.node_devices[at] < w.gpus),
            (LOW_MEMORY, (f.node_memory_mib[at] < w.memory_mib) & (w.gpus > 0)),
            (UNHEALTHY, ~f.node_healthy[at]),
            (BUSY, free[at] < max(w.gpus, 1)),
        )
        result = np.full(len(at), PASS, dtype=np.int64)
        for code, failing in reversed(checks):
            result[failing] = code
        codes[known] = result
        return index, codes

    # --- prioritize --------------------------------------------------------------------
    def prioritize(self, args: protocol.ExtenderArgs) -> protocol.HostPriorities:
        """Score feasible nodes: the policy's choice 10, the rest 0-9 by value."""
        if not convert.is_megagpu_pod(args.pod) or not self.ready():
            return protocol.NO_PRIORITIES
        try:
            workload = self._remember_workload(args.pod)
        except convert.ConvertError:
            return protocol.NO_PRIORITIES
        decided, self._prepared = self._prepared, None
        if not self._still_valid(decided, workload, args.node_names):
            decided = self._decide(workload, args.node_names)
        if decided.remembered is not None:
            self._remember(workload, decided.remembered)
            self.ledger.tentative(workload.uid, decided.remembered.node, workload.gpus)
        return decided.answer

    def prepare(self) -> None:
        """Decide for the pod filter just answered, while kube-scheduler reads that answer.

        Called once filter's answer is written. kube-scheduler then sends prioritize exactly the
        nodes filter kept (none when only one is left); the decision is used only if the pod,
        the names, the ledger's generation and the policy version are still the same.
        """
        pending, self._pending = self._pending, None
        if pending is not None and len(pending[1]) > 1:
            self._prepared = self._decide(*pending)

    def _still_valid(
        self, decided: Decided | None, workload: model.Workload, node_names: tuple[str, ...]
    ) -> bool:
        if decided is None or decided.workload is not workload:
            return False
        policy = self.policies.current()
        return (
            decided.generation == self.ledger.generation
            and decided.policy is policy
            and decided.version == policy.version
            and decided.node_names == node_names
        )

    def _decide(self, workload: model.Workload, node_names: tuple[str, ...]) -> Decided:
        """Prioritize's answer and what to remember, with no side effect but the policy's rng."""
        layout = self.ledger.layout()
        f, free = layout.fleet, _free(workload, layout)
        policy = self.policies.current()
        index = self._positions(node_names, layout)
        rows = waits_mod.rows_on(f, workload, free, index[index >= 0])
        prefixes = self._prefixes(f, node_names, index)
        if len(rows) == 0:
            answer = protocol.HostPriorities(prefixes, np.zeros(len(index), dtype=np.int64))
            return Decided(workload, node_names, layout.generation, policy, policy.version, answer)
        view = fleet.View(f, rows, free, queue_length=0)
        choice = self._sampled(policy, workload, view) or policy.choose(workload, view, self.rng)
        node_values = np.full(len(f.nodes), -np.inf)
        np.maximum.at(node_values, f.row_node[rows], choice.values)
        chosen_index = int(f.row_node[choice.row])
        requested = np.where(index >= 0, node_values[np.maximum(index, 0)], -np.inf)
        position = int(np.flatnonzero(index == chosen_index)[0])
        node_scores = scoring.scores(requested, position)
        top = _top(requested)
        values = {node_names[i]: float(requested[i]) for i in top if np.isfinite(requested[i])}
        scores_top = {node_names[i]: int(node_scores[i]) for i in top}
        reason = choice.reason
        if policy.params.mode == "shadow":
            learned = f.nodes[int(f.row_node[choice.learned_row])].name
            reason = (
                f"shadow: {policy.params.baseline} decided; the learned policy would "
                f"choose {learned} (estimated regret {choice.regret:.3f})"
            )
        remembered = Remembered(
            f.nodes[chosen_index].name,
            f.row_backend[choice.row],
            choice.mode,
            values,
            scores_top,
            policy.version,
            workload,
            reason,
            self.waits.top(
                policy, workload, f, layout.positions, rows, choice, [node_names[i] for i in top]
            ),
        )
        answer = protocol.HostPriorities(prefixes, node_scores)
        return Decided(
            workload, node_names, layout.generation, policy, policy.version, answer, remembered
        )

    def _sampled(
        self, policy: qpolicy.QPolicy, workload: model.Workload, view: fleet.View
    ) -> ports.Choice | None:
        """The row of earliest finish over sampled speeds, when every candidate has a prediction.

        The simulator's ``learned`` runs the same rule (``learned.sampled_finish``); never in
        shadow mode (the baseline decides there).
        """
        if policy.params.mode == "shadow":
            return None
        predicted = self.waits.predictions(policy, workload, view.fleet)
        explores = learned.explores(policy, workload)
        found = learned.sampled_finish(
            predicted, view, self.rng if explores else None, policy.params.explore_margin
        )
        if found is None:
            return None
        index, explored = found
        row = int(view.rows[index])
        run = waiting.duration(float(predicted.seconds[view.fleet.row_action_id[row]]))
        if explored:
            reason = (
                f"explore: earliest finish over speeds sampled from what is learned ({run} "
                "predicted here; a faster device may be believed slower)"
            )
        else:
            sampled = " over sampled speeds" if explores else ""
            reason = f"exploit: earliest predicted finish{sampled} ({run})"
        mode = "explore" if explored else "exploit"
        return ports.Choice(row, mode, policy.values(workload, view), row, reason=reason)

    def _positions(self, node_names: tuple[str, ...], layout: ledger_mod.Layout) -> np.ndarray:
        """Fleet index of every name; the last filter's answer when these are the names it kept.

        kube-scheduler sends prioritize exactly the nodes filter kept, in filter's order: one
        tuple comparison instead of a dictionary lookup per name.
        """
        kept_of, kept, positions = self._kept
        if kept_of is layout.positions and node_names == kept:
            return positions
        return _positions(node_names, layout)

    def _prefixes(
        self, f: fleet.Fleet, node_names: tuple[str, ...], index: np.ndarray
    ) -> np.ndarray:
        """The JSON prefix of each requested host: the fleet's, encoded once per node set."""
        if self._prefixes_of is not f.node_names:
            self._prefixes_of = f.node_names
            self._fleet_prefixes = protocol.host_prefixes(f.node_names)
        known = index >= 0
        prefixes = np.empty(len(index), dtype=object)
        prefixes[known] = self._fleet_prefixes[index[known]]
        unknown = np.flatnonzero(~known)
        if len(unknown):
            prefixes[unknown] = protocol.host_prefixes([node_names[i] for i in unknown.tolist()])
        return prefixes

    def _remember(self, workload: model.Workload, remembered: Remembered) -> None:
        self.remembered[workload.uid] = remembered
        self.remembered.move_to_end(workload.uid)
        while len(self.remembered) > REMEMBERED:
            self.remembered.popitem(last=False)

    # --- bind --------------------------------------------------------------------------
    async def bind(self, args: protocol.BindingArgs) -> dict[str, str]:
        """One Binding carrying the decision and devices; already bound there is success."""
        if not self.ready():
            return protocol.binding_result(NOT_READY)
        workload = self.workloads.get(args.pod_uid)
        if workload is None:
            pod = self.pod_lookup(args.pod_uid)
            if pod is None or not convert.is_megagpu_pod(pod):
                return await self._bind_plain(args)
            try:
                workload = convert.workload_from_pod(pod)
            except convert.ConvertError as e:
                return protocol.binding_result(str(e))
        node = self.ledger.node(args.node)
        if node is None:
            return protocol.binding_result(f"unknown node {args.node}")
        if not acceptable_backends(workload, node):
            return protocol.binding_result(
                f"node {node.name} offers no backend the workload accepts: workload accepts "
                f"{','.join(acceptable(workload)) or 'none'}; node offers {','.join(node.backends)}"
            )
        devices = self.ledger.take(args.pod_uid, args.node, workload.gpus)
        if devices is None:
            held = self.ledger.holders(args.node)
            return protocol.binding_result(
                f"no free devices on {node.name}: needs {workload.gpus}, {node.devices} "
                f"healthy, {sum(len(d) for d in held.values())} held by {len(held)} pods"
            )
        annotations = self.annotations(workload, node, devices)
        try:
            await self.binder(args, annotations)
        except BindConflict as e:
            if e.node != args.node:
                self.ledger.release(args.pod_uid)
                return protocol.binding_result(str(e))
        except Exception as e:  # noqa: BLE001 - reported to kube-scheduler, which falls back
            self.ledger.release(args.pod_uid)
            return protocol.binding_result(f"binding failed: {e}")
        record = json.loads(annotations[names.ANN_DECISION])
        backend = annotations[names.ANN_ASSIGNED_BACKEND]
        self.waits.placed(workload.uid)
        if not self.waits.jobs.known(workload.uid):  # the informer's copy, when seen, wins
            predicted = waits_mod.recorded(record)
            job = waits_mod.Job(node.name, backend, workload, self.waits.clock(), predicted)
            self.waits.jobs.add(workload.uid, job)
        self.on_decision(record["mode"], backend)
        return protocol.binding_result()

    def release(self, uid: str) -> None:
        """Forget what pod ``uid`` held (snapshot mode's /release)."""
        self.ledger.release(uid)
        self.waits.jobs.remove(uid)

    async def _bind_plain(self, args: protocol.BindingArgs) -> dict[str, str]:
        try:
            await self.binder(args, {})
        except BindConflict as e:
            if e.node != args.node:
                return protocol.binding_result(str(e))
        return protocol.binding_result()

    def _on_node(
        self, workload: model.Workload, node: str, backend: str
    ) -> model.Prediction | None:
        """The predicted run time of ``workload`` on ``node`` with ``backend``, if any."""
        policy, layout = self.policies.current(), self.ledger.layout()
        return self.waits.on_node(policy, workload, layout.fleet, layout.positions, node, backend)

    def annotations(
        self, workload: model.Workload, node: model.Node, devices: tuple[int, ...]
    ) -> dict[str, str]:
        """The annotations of DESIGN 9.2 written by bind."""
        seen = self.remembered.get(workload.uid)
        predictions = seen.predictions if seen is not None else None
        if seen is None:
            mode, backend, version = "forced", acceptable_backends(workload, node)[0], 0
            values, node_scores, reason = {}, {node.name: 10}, "only feasible node (no prioritize)"
            predictions = {node.name: self._on_node(workload, node.name, backend)}
        elif seen.node == node.name:
            mode, backend, version = seen.mode, seen.backend, seen.version
            values, node_scores = seen.values, seen.scores
            reason = seen.reason or (
                f"{mode}: highest value for {workload.model} on {backend}/{node.device_class}"
            )
        else:
            mode, backend, version = (
                "overridden",
                acceptable_backends(workload, node)[0],
                seen.version,
            )
            values, node_scores = seen.values, seen.scores
            reason = f"kube-scheduler chose {node.name}; the policy chose {seen.node}"
            if node.name not in (predictions or {}):
                predictions = {
                    **(predictions or {}),
                    node.name: self._on_node(workload, node.name, backend),
                }
        decision = decision_record(
            mode, node.name, values, node_scores, version, reason, predictions
        )
        annotations = {
            names.ANN_DECISION: decision,
            names.ANN_ASSIGNED_BACKEND: backend,
            names.ANN_ASSIGNED_DEVICES: ",".join(str(d) for d in devices),
            names.ANN_POLICY_VERSION: str(version),
        }
        if node.device_ids:
            annotations[names.ANN_ASSIGNED_DEVICE_IDS] = ",".join(map(node.device_id, devices))
        return annotations


def _positions(node_names: tuple[str, ...], layout: ledger_mod.Layout) -> np.ndarray:
    """Fleet index of every name (-1 when unknown)."""
    get = layout.positions.get
    return np.fromiter(map(get, node_names, itertools.repeat(-1)), np.int64, len(node_names))


def _named(node_names: tuple[str, ...], mask: np.ndarray) -> Iterator[str]:
    """The names where ``mask`` is true."""
    return itertools.compress(node_names, mask.tolist())


def _free(w: model.Workload, layout: ledger_mod.Layout) -> np.ndarray:
    """What the workload needs free per node: devices, or CPU slots for zero GPUs."""
    return layout.free if w.gpus else layout.cpu_free


def _reason(code: int, w: model.Workload, position: int, layout: ledger_mod.Layout) -> str:
    """Why filter rejected the node at ``position`` with ``code``."""
    if code == UNKNOWN:
        return "unknown node"
    node = layout.fleet.nodes[position]
    if code == NO_BACKEND:
        return (
            f"no acceptable backend: workload accepts {','.join(w.backends)}"
            f"{' (GPU)' if w.gpus else ''}; node offers {','.join(node.backends)}"
        )
    if code == TOO_FEW:
        return f"needs {w.gpus} devices; node has {node.devices}"
    if code == LOW_MEMORY:
        return (
            f"needs {w.memory_mib} MiB per device; node's devices have "
            f"{node.memory_mib_per_device} MiB"
        )
    if code == UNHEALTHY:
        return "node is not ready or its devices are unhealthy"
    if w.gpus == 0:
        return f"CPU slots busy: {int(layout.cpu_free[position])} free, needs 1"
    return f"devices busy: {int(layout.free[position])} free, needs {w.gpus}"


def _top(values: np.ndarray) -> np.ndarray:
    """Indices of the TOP + 1 largest values, largest first (no full sort)."""
    top = (
        np.argpartition(-values, TOP)[: TOP + 1]
        if len(values) > TOP + 1
        else np.arange(len(values))
    )
    return top[np.argsort(-values[top], kind="stable")]


def acceptable(workload: model.Workload) -> list[str]:
    """Backends that can run the workload: cpu for zero GPUs, else its GPU backends."""
    if workload.gpus == 0:
        return ["cpu"] if "cpu" in workload.backends else []
    return [b for b in workload.backends if b != "cpu"]


def acceptable_backends(workload: model.Workload, node: model.Node) -> list[str]:
    """Backends of ``node`` the workload accepts, in the workload's order of preference."""
    return [b for b in acceptable(workload) if b in node.backends]


def decision_record(
    mode: str,
    node: str,
    values: dict[str, float],
    node_scores: dict[str, int],
    version: int,
    reason: str,
    predictions: dict[str, model.Prediction | None] | None = None,
) -> str:
    """The decision JSON (keys of ``status.decision``), at most 8 KiB."""
    record = convert.decision(mode, node, values, node_scores, version, reason, predictions)
    text = json.dumps(record, separators=(",", ":"), allow_nan=False)
    if len(text.encode()) > DECISION_MAX_BYTES:
        record["alternatives"], record["qValues"] = [], {}
        text = json.dumps(record, separators=(",", ":"), allow_nan=False)
    return text
