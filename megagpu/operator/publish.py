"""The policy's progress in the GpuSchedulingPolicy status: one patch per learning update.

Each patch carries the resourceVersion its last patch returned, so a newer version published
meanwhile (another thread) or an edited spec turns it into a Conflict; only then is the object
read again, and a status of a newer version is never replaced by an older one.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from megagpu.core import qpolicy
from megagpu.kube import convert, names, retry
from megagpu.operator import status

LOG = logging.getLogger("megagpu.operator")
ARGS = (names.GROUP, names.VERSION, names.POLICIES, names.POLICY_NAME)


class Publisher:
    """Publishes policy versions in order, remembering what it published last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resource_version: str | None = None
        self._version = -1

    def publish(self, custom: client.CustomObjectsApi, policy: qpolicy.QPolicy) -> None:
        """Write ``policy``'s progress unless a newer version's is there already."""
        with self._lock:
            for _ in range(3):
                try:
                    if self._resource_version is None:
                        self._read(custom)
                    if self._version > policy.version:
                        return
                    self._write(custom, policy)
                    return
                except ApiException as e:
                    self._resource_version = None  # read it again
                    if e.status != 409:
                        LOG.warning("could not update the GpuSchedulingPolicy status: %s", e.reason)
                        return

    def _read(self, custom: client.CustomObjectsApi) -> None:
        current = retry.call(functools.partial(custom.get_cluster_custom_object, *ARGS))
        self._resource_version = current["metadata"]["resourceVersion"]
        self._version = (current.get("status") or {}).get("version", -1)

    def _write(self, custom: client.CustomObjectsApi, policy: qpolicy.QPolicy) -> None:
        body = {
            "metadata": {"resourceVersion": self._resource_version},
            "status": convert.policy_status(policy, names.STATE_CONFIGMAP, status.now_iso()),
        }
        patch = custom.patch_cluster_custom_object_status
        reply: Any = retry.call(functools.partial(patch, *ARGS, body))
        self._resource_version = ((reply or {}).get("metadata") or {}).get("resourceVersion")
        self._version = policy.version
