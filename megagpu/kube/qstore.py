"""The Q-state ConfigMap (DESIGN 9.4): ``megagpu-policy-state``, key ``state.json``.

Saving is a compare-and-swap on the ConfigMap's resourceVersion, so the values and the UIDs of
the outcomes they learned change together or not at all. The last versions are kept as
``megagpu-policy-state-v<version>`` (label ``megagpu.io/policy-state=history``).
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from megagpu.core import qpolicy, qstate
from megagpu.kube import names

KEY = "state.json"
HISTORY = 10


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


def policy_from_configmap(obj: dict[str, Any]) -> qpolicy.QPolicy:
    """The policy in a ConfigMap object; raises qstate.StateError when it is unusable."""
    text = (obj.get("data") or {}).get(KEY)
    if not isinstance(text, str):
        raise qstate.SchemaError(f"ConfigMap has no key {KEY}")
    return qstate.loads(text)


class Store:
    """Load and compare-and-swap the Q-state of one release namespace."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.core, self.namespace = core, namespace

    def load(self) -> Loaded:
        """The current policy and resourceVersion (policy None when absent or unusable)."""
        try:
            raw = self.core.read_namespaced_config_map(names.STATE_CONFIGMAP, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return Loaded(None, None, None)
            raise
        obj = {"data": raw.data}
        try:
            return Loaded(policy_from_configmap(obj), raw.metadata.resource_version, None)
        except qstate.StateError as e:
            return Loaded(None, raw.metadata.resource_version, str(e))

    def save(self, policy: qpolicy.QPolicy, resource_version: str | None) -> str:
        """Write ``policy`` if nobody saved since ``resource_version``; returns the new one."""
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=names.STATE_CONFIGMAP,
                namespace=self.namespace,
                resource_version=resource_version,
                labels={"app.kubernetes.io/part-of": "megagpu"},
            ),
            data={KEY: qstate.dumps(policy)},
        )
        try:
            if resource_version is None:
                saved = self.core.create_namespaced_config_map(self.namespace, body)
            else:
                saved = self.core.replace_namespaced_config_map(
                    names.STATE_CONFIGMAP, self.namespace, body
                )
        except ApiException as e:
            if e.status == 409:
                raise Conflict(str(e.reason)) from e
            raise
        self._keep_history(policy, body.data)
        return str(saved.metadata.resource_version)

    def _keep_history(self, policy: qpolicy.QPolicy, data: dict[str, str]) -> None:
        name = f"{names.STATE_CONFIGMAP}-v{policy.version}"
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=name, namespace=self.namespace, labels={names.LABEL_POLICY_HISTORY: "history"}
            ),
            data=data,
        )
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
