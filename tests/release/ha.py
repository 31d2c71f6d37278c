"""Helpers of the operator's HA release tests: fast workloads, the pods' processes, their network.

A workload here runs ``sh`` in the project's image and reports its work, so a hundred of them
take a couple of minutes on the real node. A replica's API access is cut inside its own pod's
network namespace (entered through the sandbox's pid), so nothing else on the machine changes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from megagpu.devcluster import nodeconfig, realnodes

REPORT = "echo '{\"megagpu.io/work\": 20}' > /dev/termination-log"


def workload(name: str, node: Any, command: list[str]) -> dict[str, Any]:
    """A one-device GpuWorkload pinned to the real node, running ``command`` (20 GFLOP)."""
    return {
        "apiVersion": "megagpu.io/v1alpha1",
        "kind": "GpuWorkload",
        "metadata": {"name": name},
        "spec": {
            "workloadType": "training",
            "model": "bench-gemm",
            "gpus": 1,
            "backends": ["cuda"],
            "work": {"amount": 20, "unit": "GFLOP"},
            "template": {
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node.name},
                    "tolerations": [{"key": nodeconfig.TAINT, "operator": "Exists"}],
                    "containers": [
                        {
                            "name": "w",
                            "image": "localhost/megagpu:dev",
                            "imagePullPolicy": "Never",
                            "command": command,
                        }
                    ],
                }
            },
        },
    }


def quick_workload(name: str, node: Any) -> dict[str, Any]:
    """A workload whose ``sh`` reports its work and ends: a hundred take a few minutes."""
    return workload(name, node, ["sh", "-c", REPORT])


def sandbox_pid(node: realnodes.RealNode, pod: str, namespace: str) -> int:
    """The pid of a pod's sandbox (its network namespace lives as long as the pod)."""
    found = realnodes.crictl(
        node, ["pods", "--name", pod, "--namespace", namespace, "--state", "ready", "-q"]
    )
    (sandbox,) = found.stdout.split()
    info = json.loads(realnodes.crictl(node, ["inspectp", sandbox]).stdout)
    return int(info["info"]["pid"])


@contextmanager
def api_cut_off(pid: int, service_ip: str) -> Iterator[None]:
    """Drop the pod's TCP to the ``kubernetes`` Service (its API server) until the block ends."""
    rule = ["OUTPUT", "-p", "tcp", "-d", service_ip, "--dport", "443", "-j", "DROP"]

    def iptables(*args: str) -> None:
        subprocess.run(["nsenter", "-t", str(pid), "-n", "iptables", *args], check=True)

    iptables("-I", *rule)
    try:
        yield
    finally:
        iptables("-D", *rule)
