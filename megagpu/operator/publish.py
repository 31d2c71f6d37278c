"""The policy's progress in the GpuSchedulingPolicy status: one patch per learning update.

Each patch carries the resourceVersion its last patch returned, so an edited spec or another
writer turns it into a Conflict; only then is the object read again. Callers publish in the
order they learned (the operator publishes under its learning lock), so the newest state is the
one published last. No version comparison: a Q-state reset, deleted and made again, or rolled
back has fewer updates than the status shows, and must still be shown.
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
    """Publishes the policy's progress, remembering the resourceVersion of its last patch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resource_version: str | None = None

    def publish(self, custom: client.CustomObjectsApi, policy: qpolicy.QPolicy) -> None:
        """Write ``policy``'s progress (one patch; a read first only after a conflict)."""
        with self._lock:
            for _ in range(3):
                try:
                    if self._resource_version is None:
                        self._read(custom)
                    self._write(custom, policy)
                    return
                except ApiException as e:
                    self._resource_version = None  # read it again
                    if e.status != 409:
                        LOG.warning("could not update the GpuSchedulingPolicy status: %s", e.reason)
                        return
                except Exception as e:  # noqa: BLE001 - unreachable API: the next update publishes
                    self._resource_version = None
                    LOG.warning("could not update the GpuSchedulingPolicy status: %r", e)
                    return

    def _read(self, custom: client.CustomObjectsApi) -> None:
        current = retry.call(functools.partial(custom.get_cluster_custom_object, *ARGS))
        self._resource_version = current["metadata"]["resourceVersion"]

    def _write(self, custom: client.CustomObjectsApi, policy: qpolicy.QPolicy) -> None:
        body = {
            "metadata": {"resourceVersion": self._resource_version},
            "status": convert.policy_status(policy, names.STATE_CONFIGMAP, status.now_iso()),
        }
        patch = custom.patch_cluster_custom_object_status
        reply: Any = retry.call(functools.partial(patch, *ARGS, body))
        self._resource_version = ((reply or {}).get("metadata") or {}).get("resourceVersion")
