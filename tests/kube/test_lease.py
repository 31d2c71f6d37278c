import datetime as dt
import types

from kubernetes.client.exceptions import ApiException

from megagpu.kube import lease


class FakeLeases:
    """A CoordinationV1Api holding one Lease, with resourceVersion checks."""

    def __init__(self):
        self.stored = None
        self.version = 0

    def read_namespaced_lease(self, name, namespace):
        if self.stored is None:
            raise ApiException(status=404)
        return types.SimpleNamespace(
            spec=self.stored.spec,
            metadata=types.SimpleNamespace(resource_version=str(self.version)),
        )

    def create_namespaced_lease(self, namespace, body):
        if self.stored is not None:
            raise ApiException(status=409)
        self.stored, self.version = body, self.version + 1

    def replace_namespaced_lease(self, name, namespace, body):
        if body.metadata.resource_version != str(self.version):
            raise ApiException(status=409)
        self.stored, self.version = body, self.version + 1


def clock_at(seconds):
    return lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)


def test_one_holder_at_a_time_and_takeover_after_expiry():
    api = FakeLeases()
    first = lease.Lease(api, "ns", "a", clock_at(0))
    assert first.try_acquire()
    assert not lease.Lease(api, "ns", "b", clock_at(5)).try_acquire()
    assert lease.Lease(api, "ns", "a", clock_at(10)).try_acquire()  # renewal
    assert not lease.Lease(api, "ns", "b", clock_at(20)).try_acquire()
    assert lease.Lease(api, "ns", "b", clock_at(10 + lease.DURATION_S + 1)).try_acquire()
    assert api.stored.spec.holder_identity == "b"


def test_a_lost_race_is_not_an_error():
    api = FakeLeases()
    lease.Lease(api, "ns", "a", clock_at(0)).try_acquire()
    stale = lease.Lease(api, "ns", "b", clock_at(100))
    original = api.read_namespaced_lease

    def read_then_someone_writes(name, namespace):
        found = original(name, namespace)
        api.version += 1  # another replica renewed in between
        return found

    api.read_namespaced_lease = read_then_someone_writes
    assert not stale.try_acquire()
