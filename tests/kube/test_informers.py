"""Informers: watches resume from their resourceVersion, 410 lists again, failures are loud."""

from __future__ import annotations

import json
import logging
import threading
import time
import types

from kubernetes.client.exceptions import ApiException

from megagpu.kube import informers


def obj(name: str, version: int, **extra: object) -> dict:
    return {"metadata": {"name": name, "resourceVersion": str(version)}, **extra}


class FakeResponse:
    """A watch response: one JSON line per event; ``None`` ends the stream."""

    def __init__(self, events: list, done: threading.Event) -> None:
        self.events, self.done, self.status = events, done, 200

    def stream(self, amt=None, decode_content=False):
        for event in self.events:
            yield (json.dumps(event) + "\n").encode()

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class FakeApi:
    """A list function: lists return ``listed`` (or the next of ``relisted``, with its version);
    each watch plays the next script entry."""

    def __init__(self, listed: list, version: int, watches: list, relisted=()) -> None:
        self.listed, self.version, self.watches = listed, version, list(watches)
        self.relisted = list(relisted)
        self.lists, self.watched_from = 0, []
        self.done = threading.Event()

    def __call__(self, **kwargs):
        if not kwargs.get("watch"):
            if self.lists and self.relisted:
                self.listed, self.version = self.relisted.pop(0)
            self.lists += 1
            body = {"metadata": {"resourceVersion": str(self.version)}, "items": self.listed}
            return types.SimpleNamespace(data=json.dumps(body).encode())
        self.watched_from.append(kwargs["resource_version"])
        if not self.watches:
            self.done.wait(10)
            return FakeResponse([], self.done)
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step
        return FakeResponse(step, self.done)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def run(api: FakeApi, handler=lambda kind, o: None, **kwargs) -> informers.Informer:
    return informers.Informer("test", api, handler, **kwargs).start()


def test_a_watch_that_ends_resumes_from_the_last_version_without_listing():
    api = FakeApi(
        [obj("a", 1)],
        3,
        [
            [{"type": "MODIFIED", "object": obj("a", 5)}],
            [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}],
        ],
    )
    informer = run(api)
    try:
        wait_for(lambda: len(api.watched_from) == 3)
        assert api.watched_from == ["3", "5", "9"]
        assert api.lists == 1 and informer.items["a"]["metadata"]["resourceVersion"] == "5"
    finally:
        api.done.set()
        informer.stop()


def test_410_gone_lists_again_and_reports_deletions():
    gone = {"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}
    api = FakeApi([obj("a", 1), obj("b", 2)], 2, [[gone]], relisted=[([obj("b", 7)], 7)])
    seen = []
    informer = run(api, lambda kind, o: seen.append((kind, o["metadata"]["name"])))
    try:
        wait_for(lambda: api.lists == 2 and len(api.watched_from) == 2)
        assert api.watched_from == ["2", "7"]
        assert ("DELETED", "a") in seen and set(informer.items) == {"b"}
        assert informer.synced.is_set()
    finally:
        api.done.set()
        informer.stop()


def test_api_errors_back_off_and_resume_with_the_cache_kept():
    api = FakeApi([obj("a", 1)], 4, [ApiException(status=500), ApiException(status=429)])
    informer = run(api)
    try:
        wait_for(lambda: len(api.watched_from) == 3, timeout=15)
        assert api.watched_from == ["4", "4", "4"] and api.lists == 1
        assert informer.healthy()
    finally:
        api.done.set()
        informer.stop()


def test_an_unexpected_exception_fails_loudly_then_recovers(caplog):
    failures = []
    broken = {"on": True}

    def handler(kind: str, o: dict) -> None:
        if broken["on"] and o["metadata"]["name"] == "bad":
            raise RuntimeError("handler bug")

    api = FakeApi([obj("a", 1)], 2, [[{"type": "ADDED", "object": obj("bad", 3)}]])
    with caplog.at_level(logging.ERROR, "megagpu.kube.informers"):
        informer = run(api, handler, on_failure=lambda name, e: failures.append((name, e)))
        try:
            wait_for(lambda: failures)
            assert failures[0][0] == "test" and "handler bug" in str(failures[0][1])
            assert not informer.healthy()
            assert any("handler bug" in r.getMessage() for r in caplog.records)
            broken["on"] = False  # the next list succeeds: ready again
            wait_for(informer.healthy)
            assert api.lists == 2
        finally:
            api.done.set()
            informer.stop()
