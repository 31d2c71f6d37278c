"""The Q-state ConfigMap (DESIGN 9.4): ``megagpu-policy-state``, key ``state.json``.

Saving is a compare-and-swap on the ConfigMap's resourceVersion, so the values and the UIDs of
the outcomes they learned change together or not at all.

What one learning update writes is bounded: ``state.json`` holds the whole document except the
learned UIDs (its ``learned_uids`` is empty and its checksum is its own), and the UIDs live in
``BUCKETS`` keys ``learned-uids-<nn>`` of the same ConfigMap, by a hash of the UID, each the
last ``PER_BUCKET`` of its bucket. A save sends only the keys that changed (a merge patch that
carries the resourceVersion, so it is still a compare-and-swap): ``state.json`` and one bucket
per new outcome, not the 4,096 UIDs (60% of the document) each time. Snapshots
``megagpu-policy-state-v<version>`` (label ``megagpu.io/policy-state=history``, the last
``HISTORY``) hold ``state.json``; learning takes one at most every ``history_interval_s``, a
tool (import, reset, rollback) always.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from megagpu.core import qpolicy, qstate
from megagpu.kube import names, retry

KEY = "state.json"
HISTORY = 10
BUCKETS = 64
PER_BUCKET = qpolicy.LEARNED_UIDS // BUCKETS
"""64 x 64 = the policy's window of 4,096 UIDs, so a loaded policy never drops one."""
UIDS = "learned-uids-"
MERGE_PATCH = "application/merge-patch+json"


class Conflict(Exception):
    """Someone saved first; reload and try again."""


class Loaded(NamedTuple):
    """A policy read from the cluster."""

    policy: qpolicy.QPolicy | None
    """None when the ConfigMap is absent or unusable."""
    resource_version: str | None
    """None when the ConfigMap is absent."""
    error: str | None
    """Why the ConfigMap could not be used (tampered, truncated), if it could not."""


def bucket(uid: str) -> str:
    """The data key that holds ``uid``."""
    digest = hashlib.sha256(uid.encode()).digest()
    return f"{UIDS}{int.from_bytes(digest[:4], 'big') % BUCKETS:02d}"


def _uids(data: dict[str, str]) -> dict[str, list[str]]:
    found = {}
    for key, text in data.items():
        if key.startswith(UIDS):
            with contextlib.suppress(ValueError):
                listed = json.loads(text)
                found[key] = [str(u) for u in listed] if isinstance(listed, list) else []
    return found


def policy_from_configmap(obj: dict[str, Any]) -> qpolicy.QPolicy:
    """The policy in a ConfigMap object; raises qstate.StateError when it is unusable."""
    data = obj.get("data") or {}
    text = data.get(KEY)
    if not isinstance(text, str):
        raise qstate.SchemaError(f"ConfigMap has no key {KEY}")
    policy = qstate.loads(text)
    policy.remember_learned(u for listed in _uids(data).values() for u in listed)
    return policy


def to_data(policy: qpolicy.QPolicy, before: dict[str, str]) -> dict[str, str]:
    """The ConfigMap data of ``policy``: ``before``'s UID buckets with its new UIDs added.

    UIDs only accumulate (each bucket keeps its last PER_BUCKET), so a reset or an import never
    makes an outcome learned before learnable again.
    """
    buckets = _uids(before)
    known = {u for listed in buckets.values() for u in listed}
    for uid in policy.learned_uids:
        if uid not in known:
            buckets.setdefault(bucket(uid), []).append(uid)
            known.add(uid)
    bare = copy.copy(policy)  # the document without the UIDs, with a checksum of its own
    bare.learned_uids = collections.deque()
    data = {KEY: qstate.dumps(bare)}
    for key, listed in buckets.items():
        data[key] = json.dumps(listed[-PER_BUCKET:], separators=(",", ":"))
    return data


def changes(before: dict[str, str], after: dict[str, str]) -> dict[str, str | None]:
    """The keys a merge patch must carry to turn ``before`` into ``after`` (None removes)."""
    changed: dict[str, str | None] = {k: v for k, v in after.items() if before.get(k) != v}
    changed.update({k: None for k in before if k not in after})
    return changed


class Store:
    """Load and compare-and-swap the Q-state of one release namespace.

    ``history_interval_s``: least time between two snapshots that learning takes.
    ``clock``: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        core: client.CoreV1Api,
        namespace: str,
        history_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core, self.namespace = core, namespace
        self.history_interval_s, self.clock = history_interval_s, clock
        self._lock = threading.Lock()
        self._seen: tuple[str | None, dict[str, str]] = (None, {})
        """The data of the last resourceVersion loaded or saved: what a save compares with."""
        self._snapshot_at: float | None = None
        self.bytes_written = 0
        """Bytes of ConfigMap data sent by saves and snapshots (for benchmarks)."""

    @property
    def seen_version(self) -> str | None:
        """The resourceVersion this store last read or wrote (None before either)."""
        with self._lock:
            return self._seen[0]

    def load(self, cached: bool = False) -> Loaded:
        """The current policy and resourceVersion (policy None when absent or unusable).

        ``cached``: parse what this store last read or wrote instead of reading again, when it
        has something. A compare-and-swap based on it fails (Conflict) if someone saved since,
        so a writer that is usually alone (the active operator) saves with one call.
        """
        with self._lock:
            seen_version, seen = self._seen
        if cached and seen_version is not None:
            return self._parse(seen_version, seen)
        try:
            raw = retry.call(
                lambda: self.core.read_namespaced_config_map(names.STATE_CONFIGMAP, self.namespace)
            )
        except ApiException as e:
            if e.status == 404:
                return Loaded(None, None, None)
            raise
        data = dict(raw.data or {})
        version = raw.metadata.resource_version
        with self._lock:
            self._seen = (version, data)
        return self._parse(version, data)

    @staticmethod
    def _parse(version: str, data: dict[str, str]) -> Loaded:
        try:
            return Loaded(policy_from_configmap({"data": data}), version, None)
        except qstate.StateError as e:
            return Loaded(None, version, str(e))

    def save(
        self, policy: qpolicy.QPolicy, resource_version: str | None, snapshot: bool = False
    ) -> str:
        """Write ``policy`` if nobody saved since ``resource_version``; returns the new one.

        ``snapshot``: keep this version in the history whatever the interval (tools do).
        """
        with self._lock:
            seen_version, seen = self._seen
        known = resource_version is not None and seen_version == resource_version
        data = to_data(policy, seen if known else {})
        try:
            if resource_version is None:
                saved = self._write(self.core.create_namespaced_config_map, data, None)
            elif known:
                saved = self._patch(changes(seen, data), resource_version)
            else:  # not what this store read last: the whole object, still guarded
                saved = self._write(self._replace, data, resource_version)
        except ApiException as e:
            if e.status in (404, 409):  # saved or deleted since: read it again
                raise Conflict(str(e.reason)) from e
            raise
        version = str(saved.metadata.resource_version)
        with self._lock:
            self._seen = (version, data)
        now = self.clock()
        due = self._snapshot_at is None or now - self._snapshot_at >= self.history_interval_s
        if snapshot or due:
            self._snapshot_at = now
            self._keep_history(policy, data[KEY])
        return version

    def _body(self, data: dict[str, str], resource_version: str | None) -> client.V1ConfigMap:
        return client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=names.STATE_CONFIGMAP,
                namespace=self.namespace,
                resource_version=resource_version,
                labels={"app.kubernetes.io/part-of": "megagpu"},
            ),
            data=data,
        )

    def _replace(self, namespace: str, body: client.V1ConfigMap) -> Any:
        return self.core.replace_namespaced_config_map(names.STATE_CONFIGMAP, namespace, body)

    def _write(self, call: Any, data: dict[str, str], resource_version: str | None) -> Any:
        self.bytes_written += _size(data.values())
        body = self._body(data, resource_version)
        return retry.call(lambda: call(self.namespace, body))

    def _patch(self, changed: dict[str, str | None], resource_version: str) -> Any:
        self.bytes_written += _size(v for v in changed.values() if v is not None)
        body = {"metadata": {"resourceVersion": resource_version}, "data": changed}
        return retry.call(
            lambda: self.core.patch_namespaced_config_map(
                names.STATE_CONFIGMAP, self.namespace, body, _content_type=MERGE_PATCH
            )
        )

    def _keep_history(self, policy: qpolicy.QPolicy, state: str) -> None:
        name = f"{names.STATE_CONFIGMAP}-v{policy.version}"
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=name, namespace=self.namespace, labels={names.LABEL_POLICY_HISTORY: "history"}
            ),
            data={KEY: state},
        )
        self.bytes_written += len(state.encode())
        with contextlib.suppress(ApiException):
            self.core.create_namespaced_config_map(self.namespace, body)
            self.prune()

    def history(self) -> list[tuple[int, str]]:
        """(version, ConfigMap name) of the kept versions, oldest first."""
        items = self.core.list_namespaced_config_map(
            self.namespace, label_selector=f"{names.LABEL_POLICY_HISTORY}=history"
        ).items
        found = []
        for item in items:
            suffix = item.metadata.name.rsplit("-v", 1)[-1]
            if suffix.isdigit():
                found.append((int(suffix), item.metadata.name))
        return sorted(found)

    def prune(self) -> None:
        """Delete history beyond the last HISTORY versions, oldest first."""
        for _, name in self.history()[:-HISTORY]:
            with contextlib.suppress(ApiException):
                self.core.delete_namespaced_config_map(name, self.namespace)


def _size(texts: Iterable[str]) -> int:
    return sum(len(t.encode()) for t in texts)
