"""megagpu components that ``megagpu dev up`` runs as local processes (logs beside kwok's)."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from megagpu.devcluster import processes
from megagpu.devcluster.errors import DevClusterError

NAMESPACE = "megagpu-system"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Component:
    """A megagpu process: its command line, the ports it needs and its readiness URL."""

    name: str
    args: tuple[str, ...]
    ports: tuple[int, ...]
    ready_url: str


def extender(kubeconfig: Path, port: int = 8888, metrics_port: int = 8889) -> Component:
    """The scheduler extender, watching the dev cluster."""
    return Component(
        "extender",
        (
            "extender",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            NAMESPACE,
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
        ),
        (port, metrics_port),
        f"http://127.0.0.1:{metrics_port}/readyz",
    )


def start(component: Component, log_dir: Path, pid_dir: Path) -> None:
    """Start a component, failing fast when one of its ports is taken."""
    for port in component.ports:
        if processes.port_in_use(port):
            raise DevClusterError(
                f"{component.name} needs port {port} on 127.0.0.1, which is already in use: "
                f"stop what listens there (`ss -ltnp | grep :{port}`) or use --no-components"
            )
    argv = [sys.executable, "-m", "megagpu", *component.args]
    processes.start(component.name, argv, log_dir, pid_dir, env={"PYTHONUNBUFFERED": "1"})


def wait_ready(component: Component, log_dir: Path, pid: int) -> None:
    """Wait until the component's readiness URL answers 200."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not processes.alive(pid):
            break
        try:
            with urllib.request.urlopen(component.ready_url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise DevClusterError(
        f"{component.name} did not become ready; see {log_dir / (component.name + '.log')}"
    )


def operator(kubeconfig: Path, liveness_port: int = 8081, metrics_port: int = 8080) -> Component:
    """The GpuWorkload operator."""
    return Component(
        "operator",
        (
            "operator",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            NAMESPACE,
            "--liveness",
            f"http://127.0.0.1:{liveness_port}/healthz",
            "--metrics",
            f"127.0.0.1:{metrics_port}",
            "--queue-by-size",  # the dev cluster has the size buckets' PriorityClasses
        ),
        (liveness_port, metrics_port),
        f"http://127.0.0.1:{liveness_port}/healthz",
    )


def runtime(kubeconfig: Path, time_scale: float, health_port: int = 8082) -> Component:
    """The simulated runtime that completes pods."""
    return Component(
        "runtime",
        (
            "dev",
            "runtime",
            "--kubeconfig",
            str(kubeconfig),
            "--time-scale",
            f"{time_scale:g}",
            "--health-port",
            str(health_port),
        ),
        (health_port,),
        f"http://127.0.0.1:{health_port}/readyz",
    )


def probe(kubeconfig: Path, spec: Path, port: int = 9400) -> Component:
    """The simulated probe publishing a GpuNode for every fake node."""
    return Component(
        "probe",
        (
            "probe",
            "--simulate",
            "--cluster-spec",
            str(spec),
            "--kubeconfig",
            str(kubeconfig),
            "--listen",
            f"127.0.0.1:{port}",
            "--interval",
            "15",
        ),
        (port,),
        f"http://127.0.0.1:{port}/metrics",
    )
