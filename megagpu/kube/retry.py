"""Retries of API calls that the API server refused for now (429, 5xx, no connection).

The backoff is the official client's port of client-go's ``retry.OnError``; this module only
says which errors are transient and how long megagpu waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import retry

T = TypeVar("T")

BACKOFF = retry.Backoff(steps=6, duration=0.2, factor=2.0, jitter=0.1, cap=5.0)
"""Six tries over about 6 s (0.2, 0.4, 0.8, 1.6, 3.2 s between them): an API server that
sheds load (429) or restarts (5xx, refused connections) is usually back within that."""


def transient(error: Exception) -> bool:
    """Whether ``error`` may pass if the call is made again: 429, 5xx, no connection."""
    if isinstance(error, ApiException):
        return error.status in (0, 429) or error.status >= 500
    return isinstance(error, urllib3.exceptions.HTTPError | ConnectionError)


def call(
    fn: Callable[[], T],
    backoff: retry.Backoff = BACKOFF,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """``fn()``, made again with backoff while it fails transiently; the last error else.

    A write retried after a 5xx may have been applied already: callers make writes that are
    idempotent (merge patches) or guarded (a resourceVersion precondition turns the repeat
    into a 409 Conflict).
    """
    return retry.on_error(backoff, transient, fn, sleep_func=sleep or time.sleep)
