"""Pod shapes the API server accepted in a dry run lately.

Every new template is checked with a server-side dry run before its pod is created; a thousand
workloads with one template (a job array) then cost one dry run, not a thousand. A shape is
trusted for ``ttl_s`` (admission policies and quotas change), and the real create is checked
the same way, so a stale entry still ends as InvalidTemplate, never as a silent success.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from megagpu.kube import names

PER_WORKLOAD = ("name", "uid", "ownerReferences")


def shape(pod: dict[str, Any]) -> str:
    """What the API server validates of a rendered pod, without what names its workload."""
    meta = {k: v for k, v in (pod.get("metadata") or {}).items() if k not in PER_WORKLOAD}
    meta["labels"] = {
        k: v for k, v in (meta.get("labels") or {}).items() if k != names.LABEL_WORKLOAD
    }
    text = json.dumps({**pod, "metadata": meta}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Validated:
    """Shapes seen valid, each for ``ttl_s`` seconds; at most ``limit`` remembered."""

    def __init__(self, ttl_s: float = 600.0, limit: int = 1000) -> None:
        self.ttl_s, self.limit = ttl_s, limit
        self._until: dict[str, float] = {}

    def known(self, key: str) -> bool:
        """Whether ``key`` passed a dry run less than ``ttl_s`` ago."""
        return self._until.get(key, 0.0) > time.monotonic()

    def add(self, key: str) -> None:
        """Remember that ``key`` passed a dry run now."""
        now = time.monotonic()
        if len(self._until) >= self.limit:
            self._until = {k: t for k, t in self._until.items() if t > now}
            if len(self._until) >= self.limit:
                self._until.clear()
        self._until[key] = now + self.ttl_s
