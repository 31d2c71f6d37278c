"""An in-memory stand-in for the ConfigMap calls of CoreV1Api, with the API server's
compare-and-swap (resourceVersion preconditions), merge patches and injected failures."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException


class ConfigMaps:
    """ConfigMaps of one namespace. ``fail``: statuses the next calls answer with, in order;
    ``applied_then_fail``: statuses answered after the write was applied (a lost reply)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.fail: list[int] = []
        self.applied_then_fail: list[int] = []
        self.calls: list[str] = []

    def _maybe_fail(self, verb: str) -> None:
        self.calls.append(verb)
        if self.fail:
            raise ApiException(status=self.fail.pop(0), reason="injected")

    def _store(self, name: str, data: dict[str, str], labels: dict[str, str] | None) -> Any:
        self.version += 1
        self.objects[name] = {"data": data, "rv": str(self.version), "labels": labels or {}}
        if self.applied_then_fail:
            raise ApiException(status=self.applied_then_fail.pop(0), reason="reply lost")
        return self._reply(name)

    def _reply(self, name: str) -> Any:
        obj = self.objects[name]
        meta = SimpleNamespace(name=name, resource_version=obj["rv"], labels=obj["labels"])
        return SimpleNamespace(metadata=meta, data=copy.deepcopy(obj["data"]))

    def _check(self, name: str, rv: str | None) -> None:
        if name not in self.objects:
            raise ApiException(status=404, reason="NotFound")
        if rv is not None and rv != self.objects[name]["rv"]:
            raise ApiException(status=409, reason="Conflict")

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        self._maybe_fail("get")
        self._check(name, None)
        return self._reply(name)

    def create_namespaced_config_map(self, namespace: str, body: client.V1ConfigMap) -> Any:
        self._maybe_fail("create")
        if body.metadata.name in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        return self._store(body.metadata.name, dict(body.data), body.metadata.labels)

    def replace_namespaced_config_map(
        self, name: str, namespace: str, body: client.V1ConfigMap
    ) -> Any:
        self._maybe_fail("update")
        self._check(name, body.metadata.resource_version)
        return self._store(name, dict(body.data), body.metadata.labels)

    def patch_namespaced_config_map(
        self, name: str, namespace: str, body: dict[str, Any], **_: Any
    ) -> Any:
        self._maybe_fail("patch")
        self._check(name, (body.get("metadata") or {}).get("resourceVersion"))
        data = dict(self.objects[name]["data"])
        for key, value in (body.get("data") or {}).items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return self._store(name, data, self.objects[name]["labels"])

    def list_namespaced_config_map(self, namespace: str, label_selector: str = "") -> Any:
        self.calls.append("list")
        key, _, value = label_selector.partition("=")
        items = [self._reply(n) for n, o in self.objects.items() if o["labels"].get(key) == value]
        return SimpleNamespace(items=items)

    def delete_namespaced_config_map(self, name: str, namespace: str) -> None:
        self.calls.append("delete")
        self.objects.pop(name, None)
