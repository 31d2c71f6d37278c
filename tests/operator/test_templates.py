"""Which rendered pods share a dry run."""

from __future__ import annotations

import copy

from megagpu.kube import render
from megagpu.operator import templates


def gw(name: str, image: str = "busybox", namespace: str = "team-a") -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
        "spec": {
            "workloadType": "inference",
            "model": "llama3-8b-q4",
            "gpus": 1,
            "backends": ["cuda"],
            "template": {"spec": {"containers": [{"name": "w", "image": image}]}},
        },
    }


def test_workloads_with_one_template_share_a_shape_whatever_their_names():
    a, b = render.render_pod(gw("a"), 1), render.render_pod(gw("job-0042"), 3)
    assert a["metadata"]["name"] != b["metadata"]["name"]
    assert templates.shape(a) == templates.shape(b)


def test_a_different_template_or_namespace_is_a_different_shape():
    base = templates.shape(render.render_pod(gw("a"), 1))
    assert templates.shape(render.render_pod(gw("a", image="other"), 1)) != base
    assert templates.shape(render.render_pod(gw("a", namespace="team-b"), 1)) != base
    labelled = copy.deepcopy(gw("a"))
    labelled["spec"]["template"]["metadata"] = {"labels": {"bad label": "x"}}
    assert templates.shape(render.render_pod(labelled, 1)) != base


def test_a_shape_is_trusted_for_its_ttl_only(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(templates.time, "monotonic", lambda: clock[0])
    seen = templates.Validated(ttl_s=60.0, limit=2)
    assert not seen.known("x")
    seen.add("x")
    assert seen.known("x")
    clock[0] += 61
    assert not seen.known("x")
    seen.add("y")
    seen.add("z")  # the limit drops what expired
    assert seen.known("y") and seen.known("z")
