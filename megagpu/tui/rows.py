"""The dashboard's rows: Kubernetes-shaped objects turned into what each panel shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from megagpu.kube import convert, names
from megagpu.tui.source import Health, Obj, Objects

GPU_BACKENDS = ("cuda", "vulkan", "metal")
RECENT_DECISIONS = 12


def epoch(text: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 time, or None."""
    when = convert.parse_time(text)
    return None if when is None else when.timestamp()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class DeviceRow:
    """One physical device, counted once across the backends that reach it."""

    key: str
    node: str
    backends: str
    index: int
    name: str
    utilization: float | None
    used_mib: float | None
    total_mib: float | None
    temperature_c: float | None
    healthy: bool

    @property
    def memory_share(self) -> float | None:
        """Used over total memory, 0..1."""
        if self.used_mib is None or not self.total_mib:
            return None
        return min(max(self.used_mib / self.total_mib, 0.0), 1.0)

    @property
    def text(self) -> str:
        """What a filter matches against."""
        return f"{self.node} {self.backends} {self.name}".lower()


@dataclass(frozen=True)
class NodeRow:
    """One Node with what its probe found."""

    name: str
    ready: bool
    device_class: str
    backends: str
    devices: int
    health: str
    running: int
    probed_s: float | None
    """Seconds since the last probe."""

    @property
    def text(self) -> str:
        """What a filter matches against."""
        return f"{self.name} {self.device_class} {self.backends} {self.health}".lower()


@dataclass(frozen=True)
class WorkloadRow:
    """One GpuWorkload."""

    key: str
    namespace: str
    name: str
    workload_type: str
    model: str
    gpus: int
    phase: str
    backend: str
    node: str
    mode: str
    reward: float | None
    age_s: float
    duration_s: float | None
    predicted_s: float | None
    started: float | None
    predicted_sigma: float | None = None
    """Uncertainty of ``predicted_s``: standard deviation of log(actual / predicted)."""

    @property
    def text(self) -> str:
        """What a filter matches against."""
        return (
            f"{self.namespace} {self.name} {self.workload_type} {self.model} {self.phase} "
            f"{self.backend} {self.node} {self.mode}"
        ).lower()


@dataclass(frozen=True)
class AgentRow:
    """The learning agent: the GpuSchedulingPolicy status."""

    phase: str
    mode: str
    version: int
    decisions: int
    updates: int
    epsilon: float
    reward_ema: float
    rewards: tuple[float, ...]


@dataclass(frozen=True)
class Snapshot:
    """Everything one frame shows."""

    devices: tuple[DeviceRow, ...]
    nodes: tuple[NodeRow, ...]
    workloads: tuple[WorkloadRow, ...]
    agent: AgentRow | None
    decisions: tuple[WorkloadRow, ...]
    """The newest placed workloads, newest first."""
    health: Health


def devices(gpunodes: list[Obj]) -> list[DeviceRow]:
    """Every GPU of every GpuNode, once; a device seen by several backends lists them all."""
    rows: dict[str, DeviceRow] = {}
    for gn in sorted(gpunodes, key=lambda o: o["metadata"]["name"]):
        node = gn["metadata"]["name"]
        backends = (gn.get("status") or {}).get("backends") or {}
        for backend in GPU_BACKENDS:
            entry = backends.get(backend) or {}
            for d in entry.get("devices") or []:
                index = int(d.get("index", 0))
                key = f"{node}/{d.get('uuid') or d.get('name', '?') + str(index)}"
                if key in rows:
                    old = rows[key]
                    rows[key] = DeviceRow(
                        **{**old.__dict__, "backends": f"{old.backends}+{backend}"}
                    )
                    continue
                rows[key] = DeviceRow(
                    key,
                    node,
                    backend,
                    index,
                    str(d.get("name", "?")),
                    _number(d.get("utilization")),
                    _number(d.get("usedMiB")),
                    _number(d.get("memoryMiB")),
                    _number(d.get("temperatureC")),
                    bool(d.get("healthy", entry.get("healthy", True))),
                )
    return list(rows.values())


def _ready(node: Obj) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def nodes(node_objs: list[Obj], gpunodes: list[Obj], running: dict[str, int], now: float):
    """Every Node with its backends, device count and health from its GpuNode."""
    by_name = {g["metadata"]["name"]: g for g in gpunodes}
    out = []
    for n in sorted(node_objs, key=lambda o: o["metadata"]["name"]):
        name = n["metadata"]["name"]
        labels = n["metadata"].get("labels") or {}
        st = (by_name.get(name) or {}).get("status") or {}
        summary = st.get("summary") or {}
        unhealthy = [
            f"{b}: {e.get('reason') or 'unhealthy'}"
            for b, e in (st.get("backends") or {}).items()
            if e.get("available") and not e.get("healthy", True)
        ]
        count = int(summary.get("devices", 0))
        healthy = int(summary.get("healthy", count))
        health = "; ".join(unhealthy) or (f"{healthy}/{count}" if st else "not probed")
        probed = epoch(st.get("lastProbeTime"))
        out.append(
            NodeRow(
                name,
                _ready(n),
                labels.get(names.LABEL_GPU_PRODUCT, "-"),
                str(summary.get("backends") or "-"),
                count,
                health,
                running.get(name, 0),
                None if probed is None else max(now - probed, 0.0),
            )
        )
    return out


def workload(gw: Obj, now: float) -> WorkloadRow:
    """One GpuWorkload as a row."""
    meta, spec, st = gw["metadata"], gw.get("spec") or {}, gw.get("status") or {}
    decision = st.get("decision") or {}
    created = epoch(meta.get("creationTimestamp")) or now
    return WorkloadRow(
        f"{meta.get('namespace')}/{meta['name']}",
        str(meta.get("namespace", "")),
        str(meta["name"]),
        str(spec.get("workloadType", "-")),
        str(spec.get("model", "-")),
        int(spec.get("gpus", 1)),
        str(st.get("phase", "Pending")),
        str(st.get("backend") or "-"),
        str(st.get("node") or "-"),
        str(decision.get("mode") or "-"),
        _number(st.get("reward")),
        max(now - created, 0.0),
        _number(st.get("durationSeconds")),
        _number(decision.get("predictedSeconds")),
        epoch(st.get("startedAt")) or (created if decision else None),
        _number(decision.get("predictedSigma")),
    )


def agent(policy: Obj | None) -> AgentRow | None:
    """The agent panel's numbers, or None before the operator wrote any."""
    if policy is None:
        return None
    st, spec = policy.get("status") or {}, policy.get("spec") or {}
    return AgentRow(
        str(st.get("phase", "Exploring")),
        str(spec.get("mode", "active")),
        int(st.get("version", 0)),
        int(st.get("decisions", 0)),
        int(st.get("updates", 0)),
        float(st.get("epsilon", 0.0)),
        float(st.get("rewardEma", 0.0)),
        tuple(float(r) for r in st.get("recentRewards") or []),
    )


def snapshot(objects: Objects, health: Health) -> Snapshot:
    """One frame's rows from one read of a source."""
    work = [workload(gw, objects.now) for gw in objects.workloads]
    running: dict[str, int] = {}
    for w in work:
        if w.phase == "Running":
            running[w.node] = running.get(w.node, 0) + 1
    placed = sorted((w for w in work if w.started is not None), key=lambda w: -(w.started or 0))
    return Snapshot(
        tuple(devices(objects.gpunodes)),
        tuple(nodes(objects.nodes, objects.gpunodes, running, objects.now)),
        tuple(work),
        agent(objects.policy),
        tuple(placed[:RECENT_DECISIONS]),
        health,
    )
