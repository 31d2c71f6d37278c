"""The PriorityClass of a new pod: its priority and predicted size bucket (``kube.priorities``).

kube-scheduler takes pending pods by priority, then by age, so these classes put shorter
predicted jobs first within one priority. Nothing ages a pod once it is made: a long job can wait
behind shorter ones that come after it (in the simulator at load 0.7, learned's p99 JCT is 0.93 x
oracle_greedy's). The prediction comes from the Q-state as this operator last read or wrote it,
over the device pairs of the nodes it knows that the pod's nodeSelector and required node
affinity allow; with none, in shadow mode, or when the state cannot be read, a pod gets the
middle bucket.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from megagpu.core import features, model, predict, qpolicy
from megagpu.kube import convert, names, priorities, qstore, selects

LOG = logging.getLogger("megagpu.operator.queueing")
RETRY_S = 30.0
"""While no Q-state exists (or it could not be read), how often it is read again (one GET)."""


class Classes:
    """Picks queue classes from the Q-state, parsed once per version it has."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        """Held while the cached policy is read or used (``QPolicy.keys`` registers classes)."""
        self._version: str | None = None
        self._policy: qpolicy.QPolicy | None = None
        self._read_at = -math.inf

    def _current(self, store: qstore.Store) -> qpolicy.QPolicy | None:
        with self._lock:
            seen, now = store.seen_version, time.monotonic()
            stale = self._version != seen if seen is not None else now - self._read_at >= RETRY_S
            if not stale:
                return self._policy
            self._read_at = now
        try:  # outside the lock: a read may back off for seconds
            loaded = store.load(cached=True)
        except (ApiException, HTTPError, OSError) as e:
            LOG.warning("queue classes: the Q-state could not be read (%s); keeping the last", e)
            return self._policy
        with self._lock:
            self._version, self._policy = loaded.resource_version, loaded.policy
            return self._policy

    def name(
        self,
        store: qstore.Store,
        nodes: Mapping[str, model.Node],
        labels: Mapping[str, Mapping[str, str]],
        pod: dict[str, Any],
    ) -> str:
        """The class of ``pod`` (rendered by ``kube.render``); ``labels``: each node's."""
        try:
            workload = convert.workload_from_pod(pod)
        except convert.ConvertError:  # the extender will say what is wrong; the pod still runs
            annotations = (pod.get("metadata") or {}).get("annotations") or {}
            priority = annotations.get(names.ANN_PRIORITY, "normal")
            return priorities.class_name(priority, int(predict.UNKNOWN_BUCKET))
        policy = self._current(store)
        seconds = None
        if policy is not None and policy.params.mode != "shadow":
            actions = {
                features.action_key(b, n.device_class)
                for name, n in nodes.items()
                if selects.wants(pod, {"metadata": {"name": name, "labels": labels.get(name)}})
                for b in n.backends
            }
            with self._lock:
                seconds = predict.best_run_time(policy, workload, actions)
        return priorities.class_name(workload.priority, int(predict.queue_bucket(seconds)))
