"""A real Prometheus server scrapes the probe, the extender and the operator of the dev cluster."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from megagpu.devcluster import processes
from tests.e2e.test_scheduler_extender import wait_for

TARGETS = {"megagpu-probe": 9400, "megagpu-extender": 8889, "megagpu-operator": 8080}
CHART_FILES = Path(__file__).resolve().parents[2] / "charts" / "megagpu" / "files"
COMPARISON = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.]+")


def tools() -> Path:
    found = os.environ.get("MEGAGPU_PROMETHEUS") or str(
        Path.home() / ".cache/megagpu/prometheus-deb12/usr/bin"
    )
    path = Path(found)
    assert (path / "prometheus").exists(), "run `make prometheus` (make test does) first"
    return path


@contextlib.contextmanager
def serving(targets: dict[str, list[str]], tmp: Path) -> Iterator[int]:
    """A Prometheus server scraping ``targets`` (job -> host:port) every second; yields its port."""
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": found}]}
            for job, found in targets.items()
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = processes.free_port()
    with open(tmp / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                str(tools() / "prometheus"),
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def prometheus(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    targets = {job: [f"127.0.0.1:{port}"] for job, port in TARGETS.items()}
    with serving(targets, tmp_path_factory.mktemp("prometheus")) as port:
        yield port


def query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return list(json.load(response)["data"]["result"])
    except OSError:
        return []


def test_prometheus_scrapes_gpu_series_with_dcgm_and_megagpu_labels(prometheus):
    util = wait_for(
        lambda: query(prometheus, "DCGM_FI_DEV_GPU_UTIL"),
        timeout_s=60,
        what="DCGM_FI_DEV_GPU_UTIL in Prometheus",
    )
    assert {"gpu", "UUID", "device", "modelName", "pci_bus_id", "Hostname"} <= set(
        util[0]["metric"]
    )
    memory = query(prometheus, "megagpu_device_memory_used_bytes")
    assert memory and {"backend", "device", "name"} <= set(memory[0]["metric"])
    for expr in (
        'up{job="megagpu-extender"} == 1',
        'up{job="megagpu-operator"} == 1',
        "megagpu_operator_workloads",
        "megagpu_extender_policy_version",
    ):
        wait_for(lambda expr=expr: query(prometheus, expr), timeout_s=30, what=expr)


def test_promtool_finds_the_megagpu_metrics_clean():
    """megagpu_* families must be clean; DCGM copies keep dcgm-exporter's camelCase labels."""
    with urllib.request.urlopen("http://127.0.0.1:9400/metrics", timeout=5) as response:
        page = response.read().decode()
    prefixes = ("megagpu_", "# HELP megagpu_", "# TYPE megagpu_")
    ours = "".join(line + "\n" for line in page.splitlines() if line.startswith(prefixes))
    assert "megagpu_backend_available" in ours
    done = subprocess.run(
        [str(tools() / "promtool"), "check", "metrics"],
        input=ours.encode(),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_query_and_alert_expression_returns_series(prometheus, api, namespace):
    """A workload runs end to end first, so decisions, rewards and updates exist."""
    from tests.e2e import gw

    gw.create(api, namespace, gw.manifest("scraped", "inference", "llama3-8b-q4", 1, ["cuda"]))
    gw.wait_phase(api, namespace, "scraped", ("Succeeded",), 90)
    dashboard = json.loads((CHART_FILES / "grafana-dashboard.json").read_text())
    exprs = {p["title"]: p["targets"][0]["expr"] for p in dashboard["panels"]}
    rules = yaml.safe_load((CHART_FILES / "alerts.yaml").read_text())["groups"][0]["rules"]
    for rule in rules:
        stripped = COMPARISON.sub("", rule["expr"])
        assert stripped != rule["expr"], rule["alert"]
        exprs[rule["alert"]] = stripped
    for name, expr in exprs.items():
        wait_for(lambda expr=expr: query(prometheus, expr), timeout_s=90, what=f"{name}: {expr}")
