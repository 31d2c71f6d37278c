"""The second kube-scheduler: only the megagpu-scheduler profile, calling the extender."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from megagpu.kube import names


@dataclass(frozen=True)
class ExtenderOptions:
    """How kube-scheduler calls the extender (DESIGN 9.1)."""

    url: str = "http://127.0.0.1:8888"
    """urlPrefix of the extender."""
    timeout_s: float = 2.0
    """httpTimeout: a slow extender must not stall scheduling."""
    ignorable: bool = True
    """When the extender is down, kube-scheduler places pods without it."""
    tls_ca: Path | None = None
    """CA that signed the extender's certificate (an https urlPrefix)."""
    max_unschedulable_s: float = 20.0
    """``--pod-max-in-unschedulable-pods-duration``: a pod the extender keeps waiting is
    retried at the latest this long (plus kube-scheduler's 30 s flush period) after its last
    attempt, should no cluster event requeue it first (the requeue trap of kubernetes#122019;
    kube-scheduler's default is 5 min). The chart's value is
    ``scheduler.podMaxInUnschedulablePodsDuration``."""


def config(
    kubeconfig: Path, extender: ExtenderOptions, scheduler_name: str = names.SCHEDULER_NAME
) -> dict[str, Any]:
    """KubeSchedulerConfiguration: one profile, score plugins off, the extender stanza."""
    stanza: dict[str, Any] = {
        "urlPrefix": extender.url,
        "filterVerb": "filter",
        "prioritizeVerb": "prioritize",
        "bindVerb": "bind",
        "weight": 1,
        "nodeCacheCapable": True,
        "ignorable": extender.ignorable,
        "httpTimeout": f"{extender.timeout_s:g}s",
    }
    if extender.tls_ca is not None:
        stanza["tlsConfig"] = {"caFile": str(extender.tls_ca)}
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "leaderElection": {"leaderElect": False},
        "percentageOfNodesToScore": 100,
        "profiles": [
            {
                "schedulerName": scheduler_name,
                "plugins": {"score": {"disabled": [{"name": "*"}]}},
            }
        ],
        "extenders": [stanza],
    }


def argv(
    binary: Path, config_path: Path, port: int, max_unschedulable_s: float = 20.0
) -> list[str]:
    """Command line of a kube-scheduler serving health on 127.0.0.1:``port``."""
    return [
        str(binary),
        f"--config={config_path}",
        f"--secure-port={port}",
        "--bind-address=127.0.0.1",
        f"--pod-max-in-unschedulable-pods-duration={max_unschedulable_s:g}s",
        "--v=2",
    ]


def write(path: Path, doc: dict[str, Any]) -> Path:
    """Write a configuration document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
