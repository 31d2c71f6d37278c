"""One active operator: a coordination.k8s.io Lease held before kopf starts (DESIGN 4)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

NAME = "megagpu-operator"
DURATION_S = 15
RENEW_S = 10


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Lease:
    """Acquire and renew the operator Lease; compare-and-swap on resourceVersion."""

    def __init__(
        self,
        api: client.CoordinationV1Api,
        namespace: str,
        identity: str,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.api, self.namespace, self.identity, self.clock = api, namespace, identity, clock

    def try_acquire(self) -> bool:
        """Hold the lease (create it, renew ours, or take an expired one); False when busy."""
        now = self.clock()
        spec = client.V1LeaseSpec(
            holder_identity=self.identity, lease_duration_seconds=DURATION_S, renew_time=now
        )
        try:
            current = self.api.read_namespaced_lease(NAME, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            body = client.V1Lease(metadata=client.V1ObjectMeta(name=NAME), spec=spec)
            spec.acquire_time = now
            return self._write(lambda: self.api.create_namespaced_lease(self.namespace, body))
        held = current.spec
        mine = held.holder_identity == self.identity
        renewed = held.renew_time or held.acquire_time
        expired = (
            renewed is None
            or renewed + dt.timedelta(seconds=held.lease_duration_seconds or DURATION_S) < now
        )
        if not (mine or expired):
            return False
        spec.acquire_time = held.acquire_time if mine else now
        current.spec = spec
        return self._write(lambda: self.api.replace_namespaced_lease(NAME, self.namespace, current))

    @staticmethod
    def _write(call: Callable[[], object]) -> bool:
        try:
            call()
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True
