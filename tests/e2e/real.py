"""Helpers of the real-node e2e tests: the node's record, its kubelet, its probe, its devices."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client

from megagpu.devcluster import cluster, nodeconfig, processes, realnodes
from megagpu.devcluster.nodeconfig import RealNode
from megagpu.kube import names
from megagpu.probe import plugin_devices

PROBE_INTERVAL_S = 5.0
"""The real node's probe reads its devices every 5 s (``--interval 5`` in realnodes)."""
KUBELET_STATUS_S = 10.0
"""The kubelet writes a changed node status (allocatable) every 10 s (its default
nodeStatusUpdateFrequency; the dev cluster's KubeletConfiguration keeps it)."""
REGISTERED = f"registered {names.RESOURCE_GPU} with the kubelet"
"""The probe's log line for each successful registration of its device plugin."""


def record(name: str) -> RealNode:
    """The running dev cluster's record of real node ``name``."""
    (node,) = [n for n in realnodes.recorded(cluster.paths().pids) if n.name == name]
    return node


def pin(body: dict[str, Any], node: str) -> dict[str, Any]:
    """Pin a GpuWorkload's pods to real node ``node``: its hostname and the taint's toleration."""
    spec = body["spec"]["template"].setdefault("spec", {})
    spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    spec["tolerations"] = [{"key": nodeconfig.TAINT, "operator": "Exists"}]
    return body


def allocatable_gpus(core: client.CoreV1Api, node: str) -> int | None:
    """``megagpu.io/gpu`` in the node's status.allocatable (None when absent)."""
    found = (core.read_node(node).status.allocatable or {}).get(names.RESOURCE_GPU)
    return None if found is None else int(found)


def device_health(custom: client.CustomObjectsApi, node: str) -> dict[int, bool]:
    """Index -> healthy of each device of the node's GpuNode (what the extender assigns from)."""
    gpunode = custom.get_cluster_custom_object(names.GROUP, names.VERSION, names.GPUNODES, node)
    devices = (gpunode.get("status") or {}).get("devices") or []
    return {d["index"]: d["healthy"] for d in devices}


def probe_readyz(node: RealNode) -> int:
    """The HTTP status of the node's probe ``/readyz`` (0 when it does not answer)."""
    url = f"http://127.0.0.1:{node.probe_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return 0


def registrations(node: RealNode) -> int:
    """How often the node's probe has registered its device plugin with a kubelet (its log)."""
    log = cluster.paths().logs / f"probe-{node.name}.log"
    return log.read_text(errors="replace").count(REGISTERED)


def sim_dir(node: RealNode) -> Path:
    """Where the node's probe keeps its simulated devices (its ``--sim-dir``, else the default)."""
    argv = json.loads((cluster.paths().pids / f"probe-{node.name}.argv").read_text())
    given = argv[argv.index("--sim-dir") + 1] if "--sim-dir" in argv else plugin_devices.SIM_DIR
    return Path(given)


def restart_kubelet(node: RealNode) -> None:
    """kill -9 the node's kubelet, start it again with its command line, wait until Ready."""
    p = cluster.paths()
    name = f"kubelet-{node.name}"
    pid = processes.pids(p.pids)[name]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while processes.alive(pid):
        assert time.monotonic() < deadline, f"the kubelet {pid} outlived SIGKILL"
        time.sleep(0.1)
    processes.restart(name, p.logs, p.pids)
    realnodes.wait_ready(node, Path(p.kubeconfig), p.logs, p.pids)
