"""A start timeout on a real node (issue 19): the operator stops the attempt itself, the real
kubelet then marks the deleted pod Failed, and that end is recorded as the timeout it was,
never learned as a failure of the node's device."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client, watch

from megagpu.devcluster import components
from megagpu.kube import qstore
from tests.e2e import gw as g
from tests.e2e import real

TIMEOUT_S = 5
"""startTimeoutSeconds: the watchdog looks every 3 s, so each attempt is stopped within 8 s."""


def never_starts(node: str) -> dict[str, Any]:
    """A cpu workload pinned to ``node`` whose image is never pulled: it stays Pending."""
    body = g.manifest("stuck", "embedding", "all-minilm-l6-v2", 0, ["cpu"])
    body["spec"] |= {"startTimeoutSeconds": TIMEOUT_S, "maxRetries": 1}
    container = {
        "name": "w",
        "image": "localhost/megagpu-never-pulled:none",
        "imagePullPolicy": "Never",
    }
    body["spec"]["template"]["spec"]["containers"] = [container]
    return real.pin(body, node)


class PodPhases:
    """Every phase each pod of a namespace went through, as a watch saw it."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.seen: dict[str, tuple[str, list[str]]] = {}
        self._stopped = False
        self._watch = watch.Watch()
        args = (core.list_namespaced_pod, namespace)
        self._thread = threading.Thread(target=self._run, args=args, daemon=True)
        self._thread.start()

    def _run(self, *args: Any) -> None:
        try:
            for event in self._watch.stream(*args, timeout_seconds=300):
                pod = event["object"]
                uid, phases = self.seen.setdefault(pod.metadata.name, (pod.metadata.uid, []))
                if not phases or phases[-1] != pod.status.phase:
                    phases.append(pod.status.phase)
        except Exception:
            if not self._stopped:  # a stream cut by stop() ends this way
                raise

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()


def test_a_start_timeout_is_recorded_as_a_timeout_and_never_learned(api, namespace, real_node):
    core = client.CoreV1Api(api)
    store = qstore.Store(core, components.NAMESPACE)
    before = store.load().policy
    updates = before.updates if before else 0
    phases = PodPhases(core, namespace)
    try:
        g.create(api, namespace, never_starts(real_node))
        gw = g.wait_phase(api, namespace, "stuck", ("Succeeded", "Failed"), 120)
        # the deleted pods' ends (the kubelet marks them Failed) come after the status
        g.wait_for(
            lambda: (
                {"stuck-a1", "stuck-a2"} <= set(phases.seen)
                and not core.list_namespaced_pod(namespace).items
            ),
            timeout_s=60,
            what="both attempts' pods to be gone",
        )
    finally:
        phases.stop()
    status = gw["status"]
    assert status["attempts"] == 2, status
    failed = g.condition(gw, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "StartTimeout"), failed
    assert f"startTimeoutSeconds={TIMEOUT_S}" in failed["message"], failed
    assert status["stopped"]["pod"] == "stuck-a2", status
    assert status["stopped"]["reason"] == "StartTimeout", status
    assert "reward" not in status, status
    for name, (_, seen) in phases.seen.items():
        assert "Running" not in seen and "Succeeded" not in seen, (name, seen)
    ended = [n for n, (_, seen) in phases.seen.items() if "Failed" in seen]
    print(f"\npods' phases: {phases.seen}")
    assert ended, f"the kubelet marked no stopped pod Failed: {phases.seen}"

    after = store.load().policy
    assert (after.updates if after else 0) == updates, "the operator learned its own kill"
    learned = set(after.learned_uids) if after else set()
    assert not learned & {uid for uid, _ in phases.seen.values()}
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=stuck")
    reasons = [e.reason for e in events.items]
    assert reasons.count("Retrying") == 1 and "Failed" in reasons, reasons
