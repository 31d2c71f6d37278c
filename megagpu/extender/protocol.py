"""kube-scheduler's extender wire format, exactly (k8s.io/kube-scheduler/extender/v1).

Keys are the Go field names (``Pod``, ``NodeNames``, ``FailedNodes``, ``Host``, ``Score``, ...).
Parsing checks shapes and raises ProtocolError (HTTP 400) with a message saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson


class ProtocolError(ValueError):
    """The request body is not what kube-scheduler sends; answered with 400."""


@dataclass(frozen=True)
class ExtenderArgs:
    """Body of filter and prioritize."""

    pod: dict[str, Any]
    node_names: tuple[str, ...]
    """``NodeNames`` (nodeCacheCapable), or the names of ``Nodes.items``."""


@dataclass(frozen=True)
class BindingArgs:
    """Body of bind."""

    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {type(body).__name__}")
    return body


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{key} must be a non-empty string")
    return value


def parse_args(body: Any) -> ExtenderArgs:
    """ExtenderArgs from a decoded JSON body."""
    body = _object(body, "the request body")
    pod = body.get("Pod")
    if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
        raise ProtocolError("Pod must be a pod object with metadata")
    names = body.get("NodeNames")
    if names is None:
        nodes = body.get("Nodes")
        items = nodes.get("items") if isinstance(nodes, dict) else None
        if not isinstance(items, list):
            raise ProtocolError("one of NodeNames (a list of strings) or Nodes.items is required")
        names = [
            (n.get("metadata") or {}).get("name") if isinstance(n, dict) else None for n in items
        ]
    if not isinstance(names, list) or not _all_strings(names) or "" in names:
        raise ProtocolError("NodeNames must be a list of non-empty strings")
    return ExtenderArgs(pod=pod, node_names=tuple(names))


def _all_strings(items: list[Any]) -> bool:
    """Whether every item is a str (``str.join`` checks that in C: 5,000 names in microseconds)."""
    try:
        "".join(items)
    except TypeError:
        return False
    return True


def parse_binding(body: Any) -> BindingArgs:
    """ExtenderBindingArgs from a decoded JSON body."""
    body = _object(body, "the request body")
    return BindingArgs(
        pod_name=_string(body, "PodName"),
        pod_namespace=_string(body, "PodNamespace"),
        pod_uid=_string(body, "PodUID"),
        node=_string(body, "Node"),
    )


def filter_result(
    passed: list[str],
    failed: dict[str, str],
    unresolvable: dict[str, str],
    error: str = "",
) -> dict[str, Any]:
    """ExtenderFilterResult (nodeCacheCapable: names only)."""
    return {
        "Nodes": None,
        "NodeNames": passed,
        "FailedNodes": failed,
        "FailedAndUnresolvableNodes": unresolvable,
        "Error": error,
    }


def binding_result(error: str = "") -> dict[str, str]:
    """ExtenderBindingResult."""
    return {"Error": error}


SCORE_ENDS = np.array([f"{score}}}" for score in range(11)], dtype=object)
"""The end of a HostPriority after ``"Score":``, by score (MaxExtenderPriority is 10)."""


def host_prefixes(names: Sequence[str]) -> np.ndarray:
    """``{"Host":"<name>","Score":`` for each name, as an object array."""
    return np.array(
        ['{"Host":' + orjson.dumps(name).decode() + ',"Score":' for name in names], dtype=object
    )


@dataclass(frozen=True)
class HostPriorities:
    """A HostPriorityList kept as arrays: encoded without a dict per host (5,000 in 0.25 ms)."""

    prefixes: np.ndarray
    """``host_prefixes`` of the hosts, in order."""
    scores: np.ndarray
    """Score of each host, 0..10."""

    def to_json(self) -> bytes:
        """The JSON list kube-scheduler reads."""
        pieces = self.prefixes + SCORE_ENDS[self.scores]
        return ("[" + ",".join(pieces.tolist()) + "]").encode()

    def as_list(self) -> list[dict[str, Any]]:
        """``[{"Host": ..., "Score": ...}, ...]``."""
        return list(orjson.loads(self.to_json()))


NO_PRIORITIES = HostPriorities(host_prefixes(()), np.zeros(0, dtype=np.int64))
