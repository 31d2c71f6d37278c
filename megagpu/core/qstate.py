"""The Q-state document (DESIGN 9.4): versioned, checksummed JSON of a QPolicy."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import deque
from typing import Any

from megagpu.core import qpolicy, replay, reward, sizes

SCHEMA = "megagpu.q-state/v1"


class StateError(ValueError):
    """A Q-state document is unusable (base of the typed errors below)."""


class SchemaError(StateError):
    """The document's schema is missing or not ``megagpu.q-state/v1``."""


class ChecksumError(StateError):
    """The document's checksum does not match its content (it was edited or truncated)."""


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _table(table: qpolicy.Table) -> dict[str, list[float]]:
    flat: dict[str, list[float]] = {}
    for key, row in table.items():
        for akey, c in row.items():
            cell = [round(c.q, 6), c.n, round(c.throughput, 6), round(c.seen, 4)]
            if not math.isnan(c.spread):  # unknown: left out, as states from before it were
                cell.append(round(c.spread, 6))
            flat[f"{key}|{akey}"] = cell
    return flat


def _untable(flat: dict[str, list[float]]) -> qpolicy.Table:
    table: qpolicy.Table = {}
    for joined, (q, n, thr, *rest) in flat.items():
        key, _, akey = joined.rpartition("|")
        count = float(rest[0]) if rest else float(float(thr) > 0)  # saved before 'seen' was
        spread = float(rest[1]) if len(rest) > 1 else math.nan  # unknown: saved before it was
        cell = qpolicy.Cell(float(q), int(n), float(thr), count, spread)
        table.setdefault(key, {})[akey] = cell
    return table


def to_document(policy: qpolicy.QPolicy) -> dict[str, Any]:
    """The policy's state as a JSON-ready document with its checksum."""
    params = dataclasses.asdict(policy.params)
    body: dict[str, Any] = {
        "schema": SCHEMA,
        "version": policy.version,
        "params": params,
        "q": {
            "workloads": _table(policy.workloads),
            "models": _table(policy.models),
            "context": [round(x, 6) for x in policy.theta],
            "drift": {k: round(v, 6) for k, v in policy.drift.items()},
            "surprises": {k: [round(x, 6) for x in v] for k, v in policy.surprises.items()},
            "classes": list(policy.classes),
            "profiles": {k: list(v) for k, v in policy.profiles.items()},
            "benchmarks": {k: list(v) for k, v in policy.benchmarks.items()},
            "decisions": policy.decisions,
            "updates": policy.updates,
            "reward_ema": round(policy.reward_ema, 6),
            "recent_rewards": [round(x, 4) for x in policy.recent_rewards],
            "sizes": policy.sizes.to_json(),
        },
        "replay": [
            [
                t.workload_key,
                t.model_key,
                t.action_key,
                t.context,
                round(t.throughput, 6),
                int(t.succeeded),
                int(t.deadline_missed),
            ]
            for t in policy.replay.items()
        ],
        "learned_uids": list(policy.learned_uids),
    }
    return {**body, "checksum": _checksum(body)}


def dumps(policy: qpolicy.QPolicy) -> str:
    """The document as compact JSON text."""
    return json.dumps(to_document(policy), separators=(",", ":"), allow_nan=False)


def from_document(doc: Any) -> qpolicy.QPolicy:
    """Rebuild a policy from a document; raises SchemaError or ChecksumError when it is unusable."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise SchemaError(f"not a Q-state document: schema is {found!r}, expected {SCHEMA!r}")
    body = {k: v for k, v in doc.items() if k != "checksum"}
    try:
        expected = _checksum(body)
    except (TypeError, ValueError) as e:
        raise ChecksumError(f"Q-state content is not valid JSON data: {e}") from e
    if doc.get("checksum") != expected:
        raise ChecksumError("Q-state checksum mismatch: the document was modified or truncated")
    try:
        return _restore(body)
    except (KeyError, TypeError, ValueError) as e:
        raise SchemaError(f"Q-state document is malformed: {e!r}") from e


def loads(text: str) -> qpolicy.QPolicy:
    """Parse JSON text into a policy (typed errors as ``from_document``)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SchemaError(f"Q-state is not JSON: {e}") from e
    return from_document(doc)


def _restore(body: dict[str, Any]) -> qpolicy.QPolicy:
    known = {f.name for f in dataclasses.fields(qpolicy.Params)}
    raw = {k: v for k, v in body["params"].items() if k in known}  # a newer release's: dropped
    raw["rewards"] = reward.RewardWeights(**raw["rewards"])
    policy = qpolicy.QPolicy(qpolicy.Params(**raw))
    q = body["q"]
    policy.workloads = _untable(q["workloads"])
    policy.models = _untable(q["models"])
    policy.theta = [float(x) for x in q["context"]]
    policy.drift = {str(k): float(v) for k, v in q.get("drift", {}).items()}
    for k, values in q.get("surprises", {}).items():
        recent = policy.surprises.setdefault(str(k), deque(maxlen=qpolicy.SURPRISES))
        recent.extend(float(x) for x in values if math.isfinite(float(x)))
    policy.classes = [str(c) for c in q["classes"]]
    policy.profiles = {
        k: (str(a), float(b), str(c), str(d)) for k, (a, b, c, d) in q["profiles"].items()
    }
    policy.benchmarks = {
        k: (float(a), float(b), float(c), float(d)) for k, (a, b, c, d) in q["benchmarks"].items()
    }
    policy.decisions, policy.updates = int(q["decisions"]), int(q["updates"])
    policy.reward_ema = float(q["reward_ema"])
    policy.recent_rewards.extend(float(x) for x in q["recent_rewards"])
    policy.sizes = sizes.History.from_json(q.get("sizes", {}))
    for w, m, a, ctx, thr, ok, late in body["replay"]:
        if not math.isfinite(thr):
            raise ValueError("non-finite throughput in replay")
        policy.replay.add(replay.Transition(w, m, a, int(ctx), float(thr), bool(ok), bool(late)))
    policy.remember_learned(str(uid) for uid in body["learned_uids"])
    policy.version = int(body["version"])
    policy.device_scaling()
    policy.count_scaling()
    return policy
