"""Leader election: observed-time expiry, compare-and-swap, stepping down, API errors."""

from __future__ import annotations

import copy
import datetime as dt
import types

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from megagpu.kube import lease

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class FakeLeases:
    """A CoordinationV1Api holding one Lease, with resourceVersion checks and injectable errors."""

    def __init__(self):
        self.stored = None
        self.version = 0
        self.failing: dict[str, int] = {}
        """Identity -> HTTP status its calls get (429, 500...)."""
        self.caller = ""

    def _check(self):
        if self.caller in self.failing:
            raise ApiException(status=self.failing[self.caller])

    def read_namespaced_lease(self, name, namespace, **_):
        self._check()
        if self.stored is None:
            raise ApiException(status=404)
        found = copy.deepcopy(self.stored)
        found.metadata.resource_version = str(self.version)
        return found

    def _store(self, body):
        self.version += 1
        self.stored = copy.deepcopy(body)
        return types.SimpleNamespace(
            metadata=types.SimpleNamespace(resource_version=str(self.version))
        )

    def create_namespaced_lease(self, namespace, body, **_):
        self._check()
        if self.stored is not None:
            raise ApiException(status=409)
        return self._store(body)

    def replace_namespaced_lease(self, name, namespace, body, **_):
        self._check()
        if body.metadata.resource_version != str(self.version):
            raise ApiException(status=409)
        return self._store(body)

    def write_as(self, holder: str, renew: dt.datetime) -> None:
        """A peer writes the lease directly (what a clock-skewed peer's takeover looks like)."""
        body = self.stored or client.V1Lease(metadata=client.V1ObjectMeta(name=lease.NAME))
        body.spec = client.V1LeaseSpec(
            holder_identity=holder, lease_duration_seconds=15, acquire_time=renew, renew_time=renew
        )
        self._store(body)


class Clock:
    """A monotonic clock and an async sleep that advances it."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


class Candidate(lease.Lease):
    """A Lease whose API calls identify it to the fake (for per-replica failures)."""

    def __init__(self, api: FakeLeases, identity: str, clock: Clock, wall_offset_s: float = 0):
        super().__init__(
            api,
            "ns",
            identity,
            monotonic=clock,
            wall=lambda: EPOCH + dt.timedelta(seconds=clock.t + wall_offset_s),
        )
        self.fake = api

    def try_acquire_or_renew(self) -> bool:
        self.fake.caller = self.identity
        return super().try_acquire_or_renew()


def test_a_standby_takes_over_only_after_seeing_no_change_for_the_duration():
    api, clock = FakeLeases(), Clock()
    a, b = Candidate(api, "a", clock), Candidate(api, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # first sight of the lease: the wait starts now
    clock.t += lease.DURATION_S - 1
    assert not b.try_acquire_or_renew()
    assert a.try_acquire_or_renew()  # renewal
    assert not b.try_acquire_or_renew()  # b sees the change: its wait starts again
    clock.t += lease.DURATION_S - 1
    assert not b.try_acquire_or_renew()
    clock.t += 2
    assert b.try_acquire_or_renew()
    assert api.stored.spec.holder_identity == "b" and api.stored.spec.lease_transitions == 1


def test_a_holder_with_a_skewed_clock_keeps_the_lease_while_it_renews():
    api, clock = FakeLeases(), Clock()
    skewed = Candidate(api, "skewed", clock, wall_offset_s=-3600)  # renewTime an hour ago
    standby = Candidate(api, "standby", clock)
    for _ in range(20):
        assert skewed.try_acquire_or_renew()
        assert not standby.try_acquire_or_renew()
        clock.t += lease.RETRY_S


def test_a_lost_race_is_not_an_error():
    api, clock = FakeLeases(), Clock()
    Candidate(api, "a", clock).try_acquire_or_renew()
    stale = Candidate(api, "b", clock)
    stale.try_acquire_or_renew()
    clock.t += 100
    original = api.read_namespaced_lease

    def read_then_someone_writes(name, namespace, **kwargs):
        found = original(name, namespace, **kwargs)
        api.version += 1  # another replica renewed in between
        return found

    api.read_namespaced_lease = read_then_someone_writes
    assert not stale.try_acquire_or_renew()


@pytest.mark.asyncio
async def test_a_leader_steps_down_at_once_when_a_skewed_peer_steals_the_lease():
    api, clock = FakeLeases(), Clock()
    leader = lease.Elector(Candidate(api, "a", clock), monotonic=clock, sleep=clock.sleep)
    await leader.acquire()
    # a peer whose clock runs an hour ahead judged a's renewTime expired and wrote itself in
    api.write_as("peer", EPOCH + dt.timedelta(seconds=clock.t + 3600))
    start = clock.t
    why = await leader.keep()
    assert "held by peer" in why and not leader.leading
    assert clock.t - start <= lease.RETRY_S


@pytest.mark.parametrize("status", [429, 500, 503])
@pytest.mark.asyncio
async def test_a_leader_whose_renewals_fail_steps_down_before_a_standby_can_take_over(status):
    api, clock = FakeLeases(), Clock()
    leader = lease.Elector(Candidate(api, "a", clock), monotonic=clock, sleep=clock.sleep)
    standby = Candidate(api, "b", clock)
    await leader.acquire()
    assert not standby.try_acquire_or_renew()
    last_change = clock.t
    api.failing["a"] = status  # only the leader's calls fail (its API server path is broken)
    why = await leader.keep()
    assert "no renewal" in why
    stepped_down = clock.t
    assert stepped_down - last_change <= lease.RENEW_DEADLINE_S + lease.RETRY_S
    assert stepped_down < last_change + lease.DURATION_S  # no two leaders at any time
    while not standby.try_acquire_or_renew():
        clock.t += lease.RETRY_S
    assert clock.t >= last_change + lease.DURATION_S


@pytest.mark.asyncio
async def test_a_leader_rides_out_short_api_errors():
    api, clock = FakeLeases(), Clock()
    leader = lease.Elector(Candidate(api, "a", clock), monotonic=clock, sleep=clock.sleep)
    await leader.acquire()
    outcomes = iter([500, 429, None, 503, None])

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        status = next(outcomes, "stop")
        if status == "stop":
            api.write_as("peer", EPOCH)  # ends the test: a steal
        elif status is None:
            api.failing.pop("a", None)
        else:
            api.failing["a"] = status

    leader._sleep = sleep
    why = await leader.keep()
    assert "held by peer" in why  # the errors alone never made it step down


@pytest.mark.asyncio
async def test_a_standby_waits_through_api_errors_and_then_leads():
    api, clock = FakeLeases(), Clock()
    api.failing["b"] = 500
    standby = lease.Elector(Candidate(api, "b", clock), monotonic=clock, sleep=clock.sleep)
    steps = iter(range(5))

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if next(steps, 4) == 3:
            api.failing.pop("b")

    standby._sleep = sleep
    await standby.acquire()
    assert standby.leading and api.stored.spec.holder_identity == "b"


def test_every_lease_call_has_a_timeout_so_a_lost_api_server_cannot_hang_it():
    api, clock = FakeLeases(), Clock()
    seen = []
    for verb in ("read_namespaced_lease", "create_namespaced_lease", "replace_namespaced_lease"):
        original = getattr(api, verb)

        def timed(*args, _original=original, _verb=verb, **kwargs):
            seen.append((_verb, kwargs.get("_request_timeout")))
            return _original(*args, **kwargs)

        setattr(api, verb, timed)
    candidate = Candidate(api, "a", clock)
    assert candidate.try_acquire_or_renew() and candidate.try_acquire_or_renew()
    assert {verb for verb, _ in seen} == {
        "read_namespaced_lease",
        "create_namespaced_lease",
        "replace_namespaced_lease",
    }
    assert {timeout for _, timeout in seen} == {lease.CALL_TIMEOUT_S}
