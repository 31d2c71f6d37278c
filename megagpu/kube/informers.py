"""Caches kept by list+watch (never a list per request): a small informer on the official client.

Each informer lists once, then watches from that resourceVersion; a 410 Gone or a broken stream
relists; other errors back off and retry, so an API server restart is ridden out.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

LOG = logging.getLogger("megagpu.kube.informers")
Obj = dict[str, Any]
Handler = Callable[[str, Obj], None]
"""Called with ("ADDED" | "MODIFIED" | "DELETED", object)."""
WATCH_TIMEOUT_S = 240
MAX_BACKOFF_S = 15.0


class RawWatch(watch.Watch):  # type: ignore[misc]
    """A watch that yields plain dicts: model deserialization would cost more than the cache."""

    def get_return_type(self, func: Callable[..., Any]) -> None:
        """No model type: events carry the object as a dict."""
        return None

    def unmarshal_event(self, data: str, return_type: Any) -> Obj | None:
        """Decode one event and remember its resourceVersion for resuming."""
        event: Obj | None = super().unmarshal_event(data, None)
        if event is not None and isinstance(event.get("object"), dict):
            version = (event["object"].get("metadata") or {}).get("resourceVersion")
            if version:
                self.resource_version = version
        return event


def key(obj: Obj) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects)."""
    meta = obj.get("metadata") or {}
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else str(meta["name"])


class Informer:
    """Keeps ``items`` in step with the API server and calls ``handler`` on every change."""

    def __init__(
        self, name: str, list_fn: Callable[..., Any], handler: Handler, **list_kwargs: Any
    ) -> None:
        self.name = name
        self.items: dict[str, Obj] = {}
        self.synced = threading.Event()
        self.error: Exception | None = None
        """The last failure, cleared by the next successful list (for status displays)."""
        self._list_fn = list_fn
        self._handler = handler
        self._kwargs = list_kwargs
        self._stop = threading.Event()
        self._watch: RawWatch | None = None
        self._thread = threading.Thread(target=self._run, name=f"informer-{name}", daemon=True)

    def start(self) -> Informer:
        """Start listing and watching in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the watch."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                version = self._relist()
                backoff = 0.5
                self._follow(version)
            except ApiException as e:
                self.error = e if e.status != 410 else None
                if e.status != 410:
                    LOG.warning("%s: API error %s; retrying in %.1fs", self.name, e.status, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
            except (HTTPError, OSError, ValueError) as e:
                self.error = e
                LOG.warning("%s: %s; retrying in %.1fs", self.name, e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _relist(self) -> str:
        response = self._list_fn(_preload_content=False, **self._kwargs)
        data = json.loads(response.data)
        fresh = {key(o): o for o in data.get("items") or []}
        for gone in set(self.items) - set(fresh):
            self._handler("DELETED", self.items.pop(gone))
        for k, obj in fresh.items():
            kind = "MODIFIED" if k in self.items else "ADDED"
            self.items[k] = obj
            self._handler(kind, obj)
        self.error = None
        self.synced.set()
        return str(data["metadata"]["resourceVersion"])

    def _follow(self, version: str) -> None:
        self._watch = RawWatch()
        start = time.monotonic()
        for event in self._watch.stream(
            self._list_fn,
            resource_version=version,
            timeout_seconds=WATCH_TIMEOUT_S,
            allow_watch_bookmarks=True,
            **self._kwargs,
        ):
            if self._stop.is_set():
                return
            kind, obj = event["type"], event["raw_object"]
            if kind == "ERROR":
                raise ApiException(status=int(obj.get("code", 500)), reason=obj.get("message"))
            if kind == "BOOKMARK":
                continue
            if kind == "DELETED":
                self.items.pop(key(obj), None)
            else:
                self.items[key(obj)] = obj
            self._handler(kind, obj)
        LOG.debug("%s: watch ended after %.0fs; relisting", self.name, time.monotonic() - start)
