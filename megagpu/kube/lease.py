"""One active operator: leader election on a coordination.k8s.io Lease (DESIGN 4).

As client-go's leaderelection: a candidate takes the lease only when it has seen the lease
unchanged (same resourceVersion) for the lease duration on its own monotonic clock, never by
comparing the holder's renewTime with the local clock (a skewed peer cannot make a live lease
look expired); writes are compare-and-swap on resourceVersion; the leader renews every retry
period and steps down when no renewal succeeded within the renew deadline (5 s before any
standby may take over), or at once when it sees another holder.

Why not ``kubernetes.leaderelection`` (client v37): it measures the renew deadline and the
observed time with ``time.time()`` (a wall-clock step ends or stretches a term), cannot be
stopped (``acquire`` and ``renew_loop`` are ``time.sleep`` loops in a thread), its LeaseLock
uses the global default ApiClient, it takes over at once a lease whose record lacks acquireTime
or renewTime (another client's), and a leader that reads another holder keeps leading until its
renew deadline passes: measured with the fake API of tests/kube/test_lease.py and a fake clock,
10 s of two leaders after a steal, against at most one retry period (2 s) here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

LOG = logging.getLogger("megagpu.kube.lease")
NAME = "megagpu-operator"
DURATION_S = 15
"""How long a standby waits after the lease last changed before it takes the lease."""
RENEW_DEADLINE_S = 10
"""A leader that has not renewed for this long steps down (before any standby can take over)."""
RETRY_S = 2
"""How often the leader renews and a standby tries."""
CALL_TIMEOUT_S = 5
"""Each API call's timeout: a call hung on a lost API server ends and counts as failed."""


class Lost(Exception):
    """Another replica holds the lease."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Lease:
    """One candidate's view of the Lease: read, judge expiry by observed time, write by CAS."""

    def __init__(
        self,
        api: client.CoordinationV1Api,
        namespace: str,
        identity: str,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.api, self.namespace, self.identity = api, namespace, identity
        self._monotonic, self._wall = monotonic, wall
        self._observed: tuple[str | None, float] = (None, 0.0)
        """(resourceVersion last seen, monotonic time it was first seen)."""
        self.holder: str | None = None
        """The holder at the last read."""

    def try_acquire_or_renew(self) -> bool:
        """Hold the lease: create it, renew ours, or take one unchanged for its duration.

        False when another replica holds it or a concurrent write won; API errors raise.
        """
        now = self._monotonic()
        try:
            current = self.api.read_namespaced_lease(
                NAME, self.namespace, _request_timeout=CALL_TIMEOUT_S
            )
        except ApiException as e:
            if e.status != 404:
                raise
            return self._create(now)
        version = current.metadata.resource_version
        if version != self._observed[0]:
            self._observed = (version, now)
        held = current.spec or client.V1LeaseSpec()
        self.holder = held.holder_identity
        mine = held.holder_identity == self.identity
        duration = held.lease_duration_seconds or DURATION_S
        if held.holder_identity and not mine and now < self._observed[1] + duration:
            return False
        wall = self._wall()
        current.spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=DURATION_S,
            acquire_time=held.acquire_time if mine else wall,
            renew_time=wall,
            lease_transitions=(held.lease_transitions or 0) + (0 if mine else 1),
        )
        try:
            written = self.api.replace_namespaced_lease(
                NAME, self.namespace, current, _request_timeout=CALL_TIMEOUT_S
            )
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        self._seen_write(written, now)
        return True

    def _create(self, now: float) -> bool:
        wall = self._wall()
        spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=DURATION_S,
            acquire_time=wall,
            renew_time=wall,
            lease_transitions=0,
        )
        body = client.V1Lease(metadata=client.V1ObjectMeta(name=NAME), spec=spec)
        try:
            written = self.api.create_namespaced_lease(
                self.namespace, body, _request_timeout=CALL_TIMEOUT_S
            )
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        self._seen_write(written, now)
        return True

    def _seen_write(self, written: object, now: float) -> None:
        meta = getattr(written, "metadata", None)
        self._observed = (getattr(meta, "resource_version", None), now)
        self.holder = self.identity


Sleep = Callable[[float], Awaitable[None]]


class Elector:
    """Acquire, then keep the lease from an event loop (the API calls run in its executor)."""

    def __init__(
        self,
        lease: Lease,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.lease, self._monotonic, self._sleep = lease, monotonic, sleep
        self.leading = False

    async def _attempt(self, timeout_s: float) -> bool | None:
        """One try: True held, False someone else holds it, None the API failed or hung."""
        call = asyncio.get_running_loop().run_in_executor(None, self.lease.try_acquire_or_renew)
        try:
            return await asyncio.wait_for(call, max(timeout_s, 0.1))
        except Exception as e:  # noqa: BLE001 - 429, 5xx, unreachable: judged by the deadline
            LOG.warning("lease %s: API error: %s", NAME, repr(e))
            return None

    async def acquire(self) -> None:
        """Return once this replica holds the lease (a standby waits here, alive)."""
        while not await self._attempt(DURATION_S):
            LOG.info("standby: lease %s is held by %s", NAME, self.lease.holder)
            await self._sleep(RETRY_S)
        self.leading = True
        LOG.info("holding lease %s as %s", NAME, self.lease.identity)

    async def keep(self) -> str:
        """Renew until leadership ends; returns why (the caller stops its work)."""
        renewed = self._monotonic()
        while True:
            await self._sleep(RETRY_S)
            started = self._monotonic()
            held = await self._attempt(RENEW_DEADLINE_S - (started - renewed))
            if held:
                renewed = started
                continue
            if held is False and self.lease.holder not in (None, self.lease.identity):
                why = f"lease {NAME} is held by {self.lease.holder}"
            elif self._monotonic() - renewed >= RENEW_DEADLINE_S:
                why = f"no renewal of lease {NAME} for {RENEW_DEADLINE_S} s"
            else:
                continue
            self.leading = False
            LOG.error("stepping down: %s", why)
            return why
