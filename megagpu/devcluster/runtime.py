"""Simulated runtime for the dev cluster: completes megagpu pods after hardware-model durations.

It watches Running pods labelled ``megagpu.io/workload`` and, after work / throughput seconds
times the time scale, patches the pod's status to Succeeded or Failed with a terminated
container state (DESIGN section 6). The work a pod was given is its ``spec.work`` (the pod's
``megagpu.io/work-amount``), else one hour on the model's fastest device; the test-only
``megagpu.io/sim-work`` sets a true work the scheduler is not told. Like a real container, the
simulated one reports that work in its termination message (DESIGN 9.10), unless
``megagpu.io/sim-report: "false"``. Throughput comes from the shipped tables, else from the
node's benchmarks by the prior's rule. ``megagpu.io/sim-exit-code`` and ``sim-fail-reason`` fail
pods.
The terminated state reports simulated time: it finishes the simulated run time after it started
(four simulated hours take four real seconds at the default scale, yet read as four hours).
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import logging
import threading
import time
from typing import Any, NamedTuple

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from megagpu.core import model, prior
from megagpu.io import devices, presets, tables
from megagpu.kube import client as kube_client
from megagpu.kube import convert, informers, names
from megagpu.sim import hardware

LOG = logging.getLogger("megagpu.runtime")
DEFAULT_TIME_SCALE = 1 / 3600
DEFAULT_HOURS = 1.0
MAX_WAIT_S = 3600.0
"""Longest single wait of the completion loop (a pod meant to run for ages overflowed it)."""
RETRY_S = 1.0
"""Delay before completing a pod again after the API server failed the call."""


def load_tables() -> list[hardware.ThroughputTable]:
    """The shipped training and LLM throughput tables."""
    return [presets.training_table(), tables.load_throughputs(presets.DATA / "llm_throughputs.csv")]


def _speed(workload: model.Workload, backend: str, bench: model.Benchmarks) -> float:
    return float(
        prior.relative_speed(
            workload.workload_type,
            workload.compute_intensity,
            prior.efficiency(backend),
            bench.fp16_tflops,
            bench.fp32_tflops,
            bench.mem_gbps,
            workload.precision,
        )
    )


class Plan(NamedTuple):
    """What a simulated container will do."""

    seconds: float
    """Simulated run time, before time scaling."""
    work: float
    """The work it does (and reports), in the workload's unit."""


def run_seconds(
    pod: dict[str, Any], node: dict[str, Any], tables_: list[hardware.ThroughputTable]
) -> Plan:
    """Simulated run time and work of a pod on its node.

    An exact table row gives the throughput; else the model's fastest row is scaled by the
    prior's rule (benchmarks of this node over the row's device); else the work is in seconds
    on the reference device and the rule alone gives the speed.
    """
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    workload = convert.workload_from_pod(pod)
    target = convert.node_from_k8s(node)
    backend = annotations.get(names.ANN_ASSIGNED_BACKEND) or target.backends[0]
    rows = [
        r for t in tables_ for r in t.rows if r.model == workload.model and r.gpus == workload.gpus
    ]
    exact = [r for r in rows if r.device == target.device_class and r.backend == backend]
    mine = _speed(workload, backend, target.benchmarks) * max(workload.gpus, 1)
    if exact:
        rate, best = exact[0].throughput, max(r.throughput for r in rows)
    elif rows:
        top = max(rows, key=lambda r: r.throughput)
        spec = devices.DEVICES.get(top.device)
        source = (
            model.Benchmarks(spec.fp32_tflops, spec.fp16_tflops, spec.mem_gbps)
            if spec
            else target.benchmarks
        )
        rate = (
            top.throughput * mine / (_speed(workload, top.backend, source) * max(workload.gpus, 1))
        )
        best = top.throughput
    else:
        rate, best = mine, 1.0
    text = annotations.get(names.ANN_SIM_WORK)
    if text:
        work = float(text)
    elif workload.declared is not None:
        work = workload.declared.amount
    else:
        work = DEFAULT_HOURS * 3600 * best
    return Plan(work / max(rate, 1e-9), work)


def is_fake(node: dict[str, Any]) -> bool:
    """Whether kwok fakes the node (annotated so); real nodes' pods are left to their kubelet."""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    return annotations.get(names.ANN_KWOK_NODE) == "fake"


def termination_message(annotations: dict[str, str], work: float) -> str:
    """What the simulated container writes as its termination message (empty: no report)."""
    if annotations.get(names.ANN_SIM_REPORT, "true").lower() == "false":
        return ""
    report: dict[str, Any] = {names.REPORT_WORK: work}
    if annotations.get(names.ANN_WORK_UNIT):
        report[names.REPORT_UNIT] = annotations[names.ANN_WORK_UNIT]
    return json.dumps(report)


class Runtime:
    """Completes Running megagpu pods on schedule."""

    def __init__(self, api: client.ApiClient, time_scale: float = DEFAULT_TIME_SCALE) -> None:
        self.core = client.CoreV1Api(api)
        self.time_scale = time_scale
        self.tables = load_tables()
        self._due: list[tuple[float, str, str, str, Plan]] = []
        self._planned: set[str] = set()
        self._lock = threading.Condition()
        self.nodes = informers.Informer("nodes", self.core.list_node, lambda *_: None)
        self.pods = informers.Informer(
            "pods",
            self.core.list_pod_for_all_namespaces,
            self._pod,
            label_selector=names.LABEL_WORKLOAD,
        )

    def start(self) -> None:
        """Watch nodes and pods; complete pods from a background thread."""
        self.nodes.start()
        self.nodes.synced.wait(30)
        self.pods.start()
        threading.Thread(target=self._loop, name="runtime", daemon=True).start()

    def ready(self) -> bool:
        """Both caches synced."""
        return self.nodes.synced.is_set() and self.pods.synced.is_set()

    def _pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        uid = str(meta.get("uid"))
        if kind == "DELETED" or (pod.get("status") or {}).get("phase") != "Running":
            return
        if uid in self._planned:
            return
        node = self.nodes.items.get(spec.get("nodeName", ""))
        if node is None or not is_fake(node):
            return  # a real kubelet runs and ends its pods itself
        try:
            simulated = run_seconds(pod, node, self.tables)
        except (convert.ConvertError, ValueError) as e:
            LOG.warning(
                "%s/%s: cannot simulate (%s); completing now",
                meta.get("namespace"),
                meta.get("name"),
                e,
            )
            simulated = Plan(0.0, 0.0)
        with self._lock:
            self._planned.add(uid)
            due = time.monotonic() + simulated.seconds * self.time_scale
            heapq.heappush(self._due, (due, uid, meta["namespace"], meta["name"], simulated))
            self._lock.notify()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._due or self._due[0][0] > time.monotonic():
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    self._lock.wait(None if wait is None else min(wait, MAX_WAIT_S))
                _, uid, namespace, name, simulated = heapq.heappop(self._due)
            try:
                self._complete(namespace, name, simulated)
            except ApiException as e:
                if e.status != 404:  # 404: the pod is gone, nothing to complete
                    self._retry(uid, namespace, name, simulated, e.reason)
            except (HTTPError, OSError) as e:  # the API server away: keep the completion
                self._retry(uid, namespace, name, simulated, str(e))

    def _retry(self, uid: str, namespace: str, name: str, simulated: Plan, why: Any) -> None:
        LOG.warning(
            "%s/%s: completing failed (%s); retrying in %.0fs", namespace, name, why, RETRY_S
        )
        with self._lock:
            heapq.heappush(self._due, (time.monotonic() + RETRY_S, uid, namespace, name, simulated))
            self._lock.notify()

    def _complete(self, namespace: str, name: str, simulated: Plan) -> None:
        pod = self.core.read_namespaced_pod(name, namespace)
        annotations = pod.metadata.annotations or {}
        code = int(annotations.get(names.ANN_SIM_EXIT_CODE, "0") or 0)
        reason = annotations.get(names.ANN_SIM_FAIL_REASON) or (
            "Completed" if code == 0 else "Error"
        )
        stamp = "%Y-%m-%dT%H:%M:%SZ"
        begin = pod.status.start_time or dt.datetime.now(dt.UTC)
        started = begin.strftime(stamp)
        now = (begin + dt.timedelta(seconds=max(simulated.seconds, 1.0))).strftime(stamp)
        message = termination_message(annotations, simulated.work) if simulated.work else ""
        containers = [
            {
                "name": c.name,
                "image": c.image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": code,
                        "reason": reason,
                        "startedAt": started,
                        "finishedAt": now,
                        **({"message": message} if message else {}),
                    }
                },
            }
            for c in pod.spec.containers
        ]
        body = {
            "status": {
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "PodCompleted",
                        "lastTransitionTime": now,
                    }
                ],
                "containerStatuses": containers,
            }
        }
        kube_client.send(self.core.patch_namespaced_pod_status, name, namespace, body)


def serve_health(runtime: Runtime, port: int) -> None:
    """/readyz on 127.0.0.1:``port`` (200 once both caches synced), in a thread."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
            ok = runtime.ready()
            self.send_response(200 if ok else 503)
            self.end_headers()
            self.wfile.write(b"ok" if ok else b"caches not synced")

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
