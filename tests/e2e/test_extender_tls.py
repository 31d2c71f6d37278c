"""kube-scheduler talks to the megagpu extender over HTTPS (issue 4: TLS).

The test makes a CA and a server certificate valid for IP 127.0.0.1 (openssl), starts the
extender with --tls-cert/--tls-key and a second kube-scheduler (its own profile, leaderElect
false, the CA in the extender's tlsConfig), and places a megagpu pod through it.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from megagpu.devcluster import binaries, components, processes, scheduler
from megagpu.extender import placement
from tests.e2e.conftest import ROOT
from tests.e2e.podspec import megagpu_pod
from tests.e2e.test_scheduler_extender import wait_for


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for IP 127.0.0.1, server key), by openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=megagpu-test-ca",
    )
    openssl("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=megagpu-extender")
    (directory / "san.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
    )
    return directory / "ca.crt", directory / "tls.crt", directory / "tls.key"


def https_get(url: str, ca: Path | None) -> str:
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return response.read().decode()


def requests_by_verb(metrics_port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = re.findall(r'^megagpu_extender_requests_total\{verb="(\w+)"\} (\S+)$', text, re.M)
    return {verb: float(value) for verb, value in found}


def ready(url: str) -> bool:
    """Whether the extender's caches have synced (503 until then)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


@pytest.fixture
def tls_scheduler(kubeconfig: Path, tmp_path: Path) -> Iterator[tuple[str, int, int, Path]]:
    """(scheduler name, HTTPS port, metrics port, CA) of an HTTPS extender and its scheduler."""
    ca, cert, key = make_certificates(tmp_path)
    port, metrics_port, sched_port = (processes.free_port() for _ in range(3))
    name = f"megagpu-tls-{uuid.uuid4().hex[:6]}"
    log = open(tmp_path / "components.log", "wb")
    component = components.extender(kubeconfig, port, metrics_port)
    extender = subprocess.Popen(
        [
            *(sys.executable, "-m", "megagpu", *component.args),
            *("--tls-cert", str(cert), "--tls-key", str(key)),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    options = scheduler.ExtenderOptions(url=f"https://127.0.0.1:{port}", tls_ca=ca)
    conf = scheduler.write(tmp_path / "sched.yaml", scheduler.config(kubeconfig, options, name))
    assert scheduler.config(kubeconfig, options, name)["leaderElection"] == {"leaderElect": False}
    sched = subprocess.Popen(
        scheduler.argv(binaries.binary("kube-scheduler"), conf, sched_port),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: ready(component.ready_url), what="the HTTPS extender to be ready")
        yield name, port, metrics_port, ca
    finally:
        for proc in (sched, extender):
            proc.terminate()
            proc.wait(timeout=10)
        log.close()


def test_the_extender_serves_https_with_a_certificate_for_127_0_0_1(tls_scheduler):
    _, port, _, ca = tls_scheduler
    assert https_get(f"https://127.0.0.1:{port}/healthz", ca) == "ok"
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        https_get(f"https://127.0.0.1:{port}/healthz", None)  # without the CA: not trusted


def test_kube_scheduler_places_a_pod_through_the_https_extender(api, namespace, tls_scheduler):
    name, _, metrics_port, _ = tls_scheduler
    core = client.CoreV1Api(api)
    before = requests_by_verb(metrics_port)
    core.create_namespaced_pod(
        namespace,
        megagpu_pod(
            "tls",
            workload_type="training",
            model="resnet-50",
            gpus=1,
            backends=("cuda", "vulkan"),
            scheduler=name,
        ),
    )
    node = wait_for(
        lambda: core.read_namespaced_pod("tls", namespace).spec.node_name,
        what="the pod to be bound through the HTTPS extender",
    )
    annotations = core.read_namespaced_pod("tls", namespace).metadata.annotations
    decision = json.loads(annotations["megagpu.io/decision"])
    assert set(decision) == placement.DECISION_KEYS
    backend = annotations["megagpu.io/assigned-backend"]
    assert backend in ("cuda", "vulkan")
    assert core.read_node(node).metadata.labels.get(f"megagpu.io/backend.{backend}") == "true"
    after = requests_by_verb(metrics_port)
    for verb in ("filter", "bind"):
        assert after.get(verb, 0) > before.get(verb, 0), verb
