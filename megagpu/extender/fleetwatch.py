"""Nodes and GpuNodes watched in a process of their own: the extender hears only real changes.

Why a process: every GpuNode's status is rewritten every 15 s with the probe's readings, so at
5,000 nodes its watch brings about 330 events a second, and almost none changes what the
extender schedules by (the readings are trimmed away). As a thread of the extender, each event
takes the GIL from the request being served; on cores shared with the control plane each
hand-off is a chance for the request to lose its core. Measured with ``make
bench-extender-live`` (5,000 nodes, shared cores, 2-core VM, 2026-12-07): filter+prioritize p99
41.8 ms with the watches as threads against 20.7 ms for the same extender with no watch at all,
in the same run. Here a child process lists and watches, converts each changed node and sends
one only when what the extender reads of it changed: the converted node, or what waiting's
selectors read of the Node (labels, taints, cordon). The extender's thread that applies them
wakes for those only. The child is started again, with a backoff, if it dies; meanwhile the
extender is not ready and keeps the fleet it had.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kubernetes import client

from megagpu.core import model
from megagpu.extender import ledger as ledger_mod
from megagpu.kube import client as kube_client
from megagpu.kube import convert, informers, names

LOG = logging.getLogger("megagpu.extender")
HEALTH_POLL_S = 0.2
"""How often the child looks at its caches' health (and whether the extender is gone)."""
MAX_BACKOFF_S = 15.0
Changes = dict[str, model.Node | None]
"""Node name -> the node as the ledger knows it (None: gone, or malformed and skipped)."""
Objects = dict[str, informers.Obj | None]
"""Node name -> what waiting's selectors read of its Node object (None: gone)."""
Sink = Callable[[Changes, Objects], None]


class FleetCache:
    """Node and GpuNode caches, converted into the ledger's nodes one changed node at a time.

    A Node or GpuNode event converts that node and hands ``sink`` the change; the changes of a
    list are handed over together when the list ends.
    """

    def __init__(
        self,
        api: client.ApiClient,
        sink: Sink,
        on_failure: Callable[[str, Exception], None] = lambda name, e: None,
    ) -> None:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        self._sink = sink
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        """Nodes changed during a list, converted when it ends."""
        self._skipped: dict[str, str] = {}
        """Node name -> why it could not be converted (logged once per new reason)."""
        watched = {"on_failure": on_failure, "on_relisted": self.flush}
        self.nodes = informers.Informer(
            "nodes", core.list_node, self.node_event, transform=slim, **watched
        )
        self.gpunodes = informers.Informer(
            "gpunodes",
            functools.partial(
                custom.list_cluster_custom_object, names.GROUP, names.VERSION, names.GPUNODES
            ),
            self.node_event,
            transform=slim_gpunode,
            **watched,
        )
        self.all = (self.nodes, self.gpunodes)

    def node_event(self, kind: str, obj: informers.Obj) -> None:
        """A Node or its GpuNode (same name) changed: convert that node, now or after a list."""
        name = str((obj.get("metadata") or {}).get("name"))
        with self._lock:
            self._dirty.add(name)
            if not (self.nodes.relisting or self.gpunodes.relisting):
                self._flush_locked()

    def flush(self) -> None:
        """Hand over the changes a list collected."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        changes = {name: self._convert(name) for name in self._dirty}
        objects = {name: selected(self.nodes.items.get(name)) for name in self._dirty}
        self._dirty.clear()
        self._sink(changes, objects)

    def _convert(self, name: str) -> model.Node | None:
        """The node as the ledger knows it; None when gone or malformed (skipped, logged)."""
        node = self.nodes.items.get(name)
        if node is None:
            self._skipped.pop(name, None)
            return None
        try:
            converted = convert.node_from_k8s(node, self.gpunodes.items.get(name))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            reason = f"{type(e).__name__}: {e}"
            if self._skipped.get(name) != reason:
                LOG.warning("node %s skipped (not schedulable until fixed): %s", name, reason)
            self._skipped[name] = reason
            return None
        if self._skipped.pop(name, None) is not None:
            LOG.info("node %s converts again", name)
        return converted


def selected(node: informers.Obj | None) -> informers.Obj | None:
    """What waiting's selectors read of a Node: name, labels, taints and cordon."""
    if node is None:
        return None
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    return {
        "metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}},
        "spec": {k: spec[k] for k in ("taints", "unschedulable") if k in spec},
    }


def slim(obj: informers.Obj) -> informers.Obj:
    """The object without ``metadata.managedFields`` (a nested dict per written field)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def slim_gpunode(obj: informers.Obj) -> informers.Obj:
    """A GpuNode without managedFields and without the per-backend device readings.

    The extender reads ``status.devices`` and each backend's benchmarks; the readings
    (utilization, memory, temperature, power per device) are most of the object.
    """
    backends = (obj.get("status") or {}).get("backends")
    if isinstance(backends, dict):
        for name, entry in backends.items():
            if isinstance(entry, dict):
                backends[name] = {k: v for k, v in entry.items() if k != "devices"}
    return slim(obj)


class _Sender:
    """The child's end: sends a node only when it differs from what was last sent."""

    def __init__(self, conn: Connection) -> None:
        self._conn, self._lock = conn, threading.Lock()
        self._nodes: Changes = {}
        self._objects: Objects = {}

    def changes(self, changes: Changes, objects: Objects) -> None:
        with self._lock:
            nodes = _new(self._nodes, changes)
            objs = _new(self._objects, objects)
            if nodes or objs:
                self._conn.send(("nodes", nodes, objs))

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self._conn.send(message)


def _new(sent: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``batch`` that differ from ``sent`` (updated to match)."""
    new = {k: v for k, v in batch.items() if sent.get(k) != v}
    for k, v in new.items():
        if v is None:
            sent.pop(k, None)
        else:
            sent[k] = v
    return new


def child_main(kubeconfig: Path | None, conn: Connection) -> None:
    """The watch process: list and watch, send changes and health until the extender is gone."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sender = _Sender(conn)
    cache = FleetCache(
        kube_client.api_client(kubeconfig),
        sender.changes,
        on_failure=lambda name, e: sender.send(("failure", name, f"{type(e).__name__}: {e}")),
    )
    for informer in cache.all:
        informer.start()
    reported: dict[str, tuple[bool, str]] = {}
    while not conn.poll(HEALTH_POLL_S):  # readable only once the extender has closed its end
        health = {i.name: (i.healthy(), str(i.error or "")) for i in cache.all}
        if health != reported:
            sender.send(("health", health))
            reported = health


class FleetWatch:
    """The extender's end: runs the watch process, applies its changes to the ledger.

    ``objects`` holds what waiting's selectors read of each Node; ``on_failure`` gets a
    cache's name and the cause when a cache fails or the process dies.
    """

    def __init__(
        self,
        kubeconfig: Path | None,
        ledger: ledger_mod.Ledger,
        on_failure: Callable[[str, Exception], None] = lambda name, e: None,
    ) -> None:
        self.objects: Objects = {}
        self.error = ""
        """Why the watch is not healthy now ("" when it is)."""
        self._kubeconfig, self._ledger, self._on_failure = kubeconfig, ledger, on_failure
        self._health: dict[str, bool] = {}
        self._seen: set[str] = set()
        """Nodes the current child has sent: after its first list, the others are gone."""
        self._health_seen = False
        """The current child's caches have been healthy (the next restart backs off afresh)."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        """Held while the child starts, so that ``stop`` ends the one that runs."""
        self._process: multiprocessing.process.BaseProcess | None = None
        self._thread = threading.Thread(target=self._run, name="fleet-watch", daemon=True)

    def start(self) -> FleetWatch:
        """Start the watch process (and start it again whenever it dies)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the watch process."""
        with self._lock:
            self._stop.set()
            if self._process is not None:
                self._process.terminate()

    def healthy(self) -> bool:
        """Both caches synced in the running child, and none has failed since."""
        alive = self._thread.is_alive() or self._thread.ident is None  # not started: tests
        return alive and len(self._health) == 2 and all(self._health.values())

    def _run(self) -> None:
        context = multiprocessing.get_context("spawn")
        backoff = 0.5
        while True:
            with self._lock:
                if self._stop.is_set():
                    return
                mine, theirs = context.Pipe()
                self._process = context.Process(
                    target=child_main,
                    args=(self._kubeconfig, theirs),
                    name="megagpu-fleet-watch",
                    daemon=True,
                )
                self._process.start()
                self._seen = set()
            theirs.close()
            why = self._follow(mine, self._process)
            if self._stop.is_set():
                return
            self.error = f"the Node/GpuNode watch process {why}"
            LOG.error("%s; starting it again in %.1fs", self.error, backoff)
            self._on_failure("fleet-watch", RuntimeError(self.error))
            self._stop.wait(backoff)
            backoff = 0.5 if self._health_seen else min(backoff * 2, MAX_BACKOFF_S)

    def _follow(self, conn: Connection, process: multiprocessing.process.BaseProcess) -> str:
        """Apply the child's messages until it ends; why it ended."""
        self._health_seen = False
        try:
            while True:
                self._health_seen |= self._handle(conn.recv())
        except (EOFError, OSError):
            why = ""
        except Exception as e:  # noqa: BLE001 - a message that cannot be applied: start afresh
            LOG.exception("fleet watch: a change could not be applied: %s", e)
            why = f"was stopped after a change could not be applied ({type(e).__name__}: {e})"
        finally:
            conn.close()
            self._health = {}
        process.terminate()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
        return why or f"exited (code {process.exitcode})"

    def _handle(self, message: tuple[Any, ...]) -> bool:
        """Apply one message of the child; True once its caches are healthy."""
        kind = message[0]
        if kind == "nodes":
            _, changes, objects = message
            self._seen.update(changes, objects)
            for name, obj in objects.items():
                if obj is None:
                    self.objects.pop(name, None)
                else:
                    self.objects[name] = obj
            self._ledger.apply(changes)
        elif kind == "failure":
            self._on_failure(message[1], RuntimeError(message[2]))
        elif kind == "health":
            first = not self._health.get("nodes") and message[1]["nodes"][0]
            if first:  # the child's first list: nodes it never named are gone
                gone = {n.name for n in self._ledger.fleet.nodes} - self._seen
                self._ledger.apply(dict.fromkeys(gone))
                for name in set(self.objects) - self._seen:
                    del self.objects[name]
            self._health = {name: ok for name, (ok, _) in message[1].items()}
            self.error = "; ".join(f"{n}: {e}" for n, (ok, e) in message[1].items() if not ok)
        return self.healthy()
