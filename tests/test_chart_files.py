"""The chart's files agree with the sources they are generated from; alert rules pass promtool."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "megagpu"


def test_chart_crds_are_the_crds_directory_byte_for_byte():
    """`make chart-crds` copies crds/ into the chart; nothing else may change them."""
    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert chart == ours, "charts/megagpu/crds differs from crds/: run `make chart-crds`"


def test_dashboard_has_the_promised_panels_with_one_query_each():
    dashboard = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for wanted in (
        "utilization",
        "memory",
        "temperature",
        "decisions",
        "reward",
        "epsilon",
        "p99 latency",
        "phase",
    ):
        assert wanted in titles
    assert all(len(p["targets"]) == 1 and p["targets"][0]["expr"] for p in dashboard["panels"])


def _promtool() -> Path:
    found = Path(
        os.environ.get("MEGAGPU_PROMETHEUS")
        or Path.home() / ".cache/megagpu/prometheus-deb12/usr/bin"
    )
    path = found / "promtool"
    if not path.exists():
        pytest.fail("promtool missing: run `make prometheus` (make test does)")
    return path


def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    files = CHART / "files"
    names = {
        r["alert"]
        for g in yaml.safe_load((files / "alerts.yaml").read_text())["groups"]
        for r in g["rules"]
    }
    assert names == {
        "MegagpuExtenderLatencyHigh",
        "MegagpuProbeDown",
        "MegagpuDeviceUnhealthy",
        "MegagpuLearningStalled",
        "MegagpuWorkloadsStuckScheduling",
    }
    check = subprocess.run(
        [str(_promtool()), "check", "rules", "alerts.yaml"],
        cwd=files,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run(
        [str(_promtool()), "test", "rules", "alerts_test.yaml"],
        cwd=files,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = yaml.safe_load((files / "alerts_test.yaml").read_text())["tests"]
    fired = {t["alertname"] for c in cases for t in c["alert_rule_test"] if t["exp_alerts"]}
    quiet = {t["alertname"] for c in cases for t in c["alert_rule_test"] if not t["exp_alerts"]}
    assert fired == quiet == names, "every alert needs a firing and a not-firing case"
