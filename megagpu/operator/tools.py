"""``megagpu policy show | reset | export | import | rollback`` and ``megagpu explain``."""

from __future__ import annotations

import math
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from megagpu.core import qpolicy, qstate
from megagpu.kube import explain as explain_
from megagpu.kube import names, qstore


class ToolError(RuntimeError):
    """What the user asked cannot be done; the message says why."""


def _current(store: qstore.Store) -> qstore.Loaded:
    loaded = store.load()
    if loaded.error:
        raise ToolError(
            f"the stored Q-state is unusable ({loaded.error}); `megagpu policy "
            "rollback` or `reset` replaces it"
        )
    return loaded


def show(store: qstore.Store, top: int = 5) -> list[str]:
    """Lines describing the current policy and its strongest preferences."""
    loaded = _current(store)
    if loaded.policy is None:
        return ["no Q-state saved yet: the policy decides from benchmark priors"]
    p = loaded.policy
    lines = [
        f"version {p.version}  updates {p.updates}  decisions {p.decisions}  "
        f"epsilon {p.epsilon:.3f}  reward EMA {p.reward_ema:.3f}  "
        f"phase {p.phase}  mode {p.params.mode}",
        f"history: {', '.join(f'v{v}' for v, _ in store.history()) or 'none'}",
    ]
    if p.drift:
        drifts = ", ".join(f"{a} x{math.exp(d):.2f}" for a, d in sorted(p.drift.items()))
        lines.append(f"device speed now vs when learned: {drifts}")
    for key, row in sorted(p.workloads.items()):
        best = sorted(row.items(), key=lambda kv: -kv[1].q)[:top]
        cells = ", ".join(f"{a} {c.q:+.2f} (n={c.n})" for a, c in best)
        lines.append(f"  {key}: {cells}")
    return lines


def _save_as_next(store: qstore.Store, policy: qpolicy.QPolicy) -> int:
    """Save ``policy`` as the next version (versions only grow)."""
    for _ in range(5):
        loaded = store.load()
        current = loaded.policy.version if loaded.policy else 0
        policy.version = max(policy.version, current) + 1
        try:
            store.save(policy, loaded.resource_version, snapshot=True)
            return policy.version
        except qstore.Conflict:
            continue
    raise ToolError("the Q-state kept changing under us; try again")


def reset(store: qstore.Store) -> int:
    """Forget everything learned (priors only); returns the new version."""
    return _save_as_next(store, qpolicy.QPolicy())


def export(store: qstore.Store) -> str:
    """The current document as JSON text."""
    loaded = _current(store)
    if loaded.policy is None:
        raise ToolError("no Q-state saved yet: nothing to export")
    return qstate.dumps(loaded.policy)


def import_(store: qstore.Store, text: str) -> int:
    """Install a document (checked: schema and checksum); returns the new version."""
    try:
        policy = qstate.loads(text)
    except qstate.StateError as e:
        raise ToolError(f"not imported: {e}") from e
    return _save_as_next(store, policy)


def rollback(store: qstore.Store, to: int | None = None) -> int:
    """Install a kept version (default: the one before the current); returns the new version."""
    kept = store.history()
    current = store.load().policy
    candidates = [(v, n) for v, n in kept if to is None or v == to]
    if current is not None and to is None:
        candidates = [(v, n) for v, n in candidates if v < current.version]
    if not candidates:
        raise ToolError(
            f"no kept version {'to roll back to' if to is None else to}; kept: "
            f"{', '.join(f'v{v}' for v, _ in kept) or 'none'}"
        )
    version, name = candidates[-1]
    raw = store.core.read_namespaced_config_map(name, store.namespace)
    try:
        policy = qstore.policy_from_configmap({"data": raw.data})
    except qstate.StateError as e:
        raise ToolError(f"kept version v{version} is unusable: {e}") from e
    return _save_as_next(store, policy)


def explain(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str, name: str
) -> list[str]:
    """Why a GpuWorkload went where it went: decision, alternatives, reward, conditions, events."""
    try:
        gw: dict[str, Any] = custom.get_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.GPUWORKLOADS, name
        )
    except ApiException as e:
        if e.status == 404:
            raise ToolError(f"GpuWorkload {namespace}/{name} not found") from e
        raise
    events = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    ).items
    return explain_.lines(gw, [core.api_client.sanitize_for_serialization(e) for e in events])
