"""Caches kept by list+watch (never a list per request): a small informer on the official client.

Each informer lists once, then watches from that resourceVersion; a watch that ends (server
timeout, broken stream, API error) resumes from the last resourceVersion seen (bookmarks keep it
fresh), so only a 410 Gone lists again. API errors back off and retry with the cache kept. An
unexpected exception (a handler's bug, a garbled object) fails loudly: the cache stops counting
as synced (readiness false), ``on_failure`` is called (a metric), the cause is logged with its
traceback, and the informer lists afresh after a backoff.

Why not ``kubernetes.informer.SharedInformer`` (client v37): it deserializes every listed and
watched object into client models (measured on the 2-core dev VM, 2026-12-06: a list of 1,000
kwok-shaped Nodes, 2 MB, takes 53-101 ms into models against 9-10 ms of ``json.loads``, and
every watch event pays the same ratio), its list fails
for custom objects (``getattr(dict, "items")`` is the dict method, so GpuNodes never sync), it
has no synced state, swallows handler exceptions with a log line only (readiness would stay
green), does not ask for bookmarks, and reconnects a failing watch with no backoff.
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
LIST_TIMEOUT = (10, 120)
"""(connect, read) seconds of a list."""
WATCH_READ_TIMEOUT = (10, WATCH_TIMEOUT_S + 30)
"""A watch's read timeout: past the server's own end of the stream, so a half-open connection
(an API server gone without a FIN) ends in an error and a resumed watch, not a frozen cache."""
"""The server ends each watch after this long; the next one resumes from the last version."""
MAX_BACKOFF_S = 15.0
GONE = 410


class RawWatch(watch.Watch):  # type: ignore[misc]
    """A watch that yields plain dicts: model deserialization would cost more than the cache."""

    def get_return_type(self, func: Callable[..., Any]) -> None:
        """No model type: events carry the object as a dict."""
        return None

    def unmarshal_event(self, data: str, return_type: Any) -> Obj | None:
        """Decode one event and remember its resourceVersion (bookmarks too) for resuming."""
        event: Obj | None = super().unmarshal_event(data, None)
        if event is not None and event.get("type") != "ERROR":
            obj = event.get("object")
            version = (
                (obj.get("metadata") or {}).get("resourceVersion")
                if isinstance(obj, dict)
                else None
            )
            if version:
                self.resource_version = version
        return event


def key(obj: Obj) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects)."""
    meta = obj.get("metadata") or {}
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else str(meta["name"])


class Informer:
    """Keeps ``items`` in step with the API server and calls ``handler`` on every change.

    ``on_relisted`` runs after a list has been handled (a batch of changes ends there);
    ``on_failure`` gets the informer's name and the exception of an unexpected failure;
    ``transform`` trims each object before it is cached (client-go's SetTransform): what a
    cache does not hold costs no memory and no garbage-collector time.
    """

    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        handler: Handler,
        *,
        on_relisted: Callable[[], None] = lambda: None,
        on_failure: Callable[[str, Exception], None] = lambda name, e: None,
        transform: Callable[[Obj], Obj] = lambda obj: obj,
        **list_kwargs: Any,
    ) -> None:
        self.name = name
        self.items: dict[str, Obj] = {}
        self.synced = threading.Event()
        """Set once a list has been handled; cleared while an unexpected failure stands."""
        self.error: Exception | None = None
        """The last failure, cleared by the next successful list or watch (for status displays)."""
        self.relisting = False
        """True while a list's changes are being handled (``on_relisted`` follows)."""
        self.lists = 0
        """Lists made so far (1 plus one per 410 Gone or unexpected failure)."""
        self._list_fn = list_fn
        self._handler = handler
        self._on_relisted = on_relisted
        self._on_failure = on_failure
        self._transform = transform
        self._kwargs = list_kwargs
        self._stop = threading.Event()
        self._watch: RawWatch | None = None
        self._resume: str | None = None
        """The resourceVersion the next watch resumes from (None: list first)."""
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

    def healthy(self) -> bool:
        """Synced, and its thread still runs (or was never started, as in tests)."""
        alive = self._thread.is_alive() or self._thread.ident is None
        return self.synced.is_set() and alive

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if self._resume is None:
                    self._resume = self._relist()
                self._follow(self._resume)
                backoff = 0.5
                continue
            except ApiException as e:
                if e.status == GONE:
                    LOG.info("%s: watch expired (410 Gone); listing again", self.name)
                    self._resume = None
                    continue
                self.error = e
                LOG.warning(
                    "%s: API error %s %s; retrying in %.1fs", self.name, e.status, e.reason, backoff
                )
            except (HTTPError, OSError) as e:
                self.error = e
                LOG.warning("%s: %s; retrying in %.1fs", self.name, e, backoff)
            except Exception as e:  # noqa: BLE001 - fail loudly, then list afresh
                self.error, self._resume = e, None
                self.synced.clear()
                LOG.exception("%s: cache failed (not ready until it lists again): %s", self.name, e)
                self._on_failure(self.name, e)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _relist(self) -> str:
        response = self._list_fn(
            _preload_content=False, _request_timeout=LIST_TIMEOUT, **self._kwargs
        )
        data = json.loads(response.data)
        fresh = {key(o): self._transform(o) for o in data.get("items") or []}
        self.lists += 1
        self.relisting = True
        try:
            for gone in set(self.items) - set(fresh):
                self._handler("DELETED", self.items.pop(gone))
            for k, obj in fresh.items():
                kind = "MODIFIED" if k in self.items else "ADDED"
                self.items[k] = obj
                self._handler(kind, obj)
        finally:
            self.relisting = False
        self._on_relisted()
        self.error = None
        self.synced.set()
        return str(data["metadata"]["resourceVersion"])

    def _follow(self, version: str) -> None:
        """Watch from ``version`` until the stream ends, advancing ``_resume`` per event."""
        self._watch = RawWatch()
        start = time.monotonic()
        for event in self._watch.stream(
            self._list_fn,
            resource_version=version,
            timeout_seconds=WATCH_TIMEOUT_S,
            _request_timeout=WATCH_READ_TIMEOUT,
            allow_watch_bookmarks=True,
            **self._kwargs,
        ):
            if self._stop.is_set():
                break
            kind, obj = event["type"], self._transform(event["raw_object"])
            self._resume = str(self._watch.resource_version or self._resume)
            if kind == "BOOKMARK":
                continue
            if kind == "DELETED":
                self.items.pop(key(obj), None)
            else:
                self.items[key(obj)] = obj
            self._handler(kind, obj)
            self.error = None
        LOG.debug("%s: watch ended after %.0fs; resuming", self.name, time.monotonic() - start)
