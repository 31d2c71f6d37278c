"""The Helm chart against the dev cluster: lint, server-side dry run, install, upgrade, RBAC."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from megagpu.devcluster import binaries
from megagpu.kube import priorities
from tests.e2e.conftest import ROOT, kubectl

CHART = ROOT / "charts" / "megagpu"
# The dev cluster already has the PriorityClasses and the default policy (from `megagpu dev up`),
# owned by no release: an install into it leaves those to the cluster.
KUBE = ["--kube-version", f"v{binaries.K8S_VERSION}"]
"""helm template renders offline, for an old default version unless told."""
DEV = ["--set", "priorityClasses.create=false", "--set", "policy.create=false"]


def helm(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries.binary("helm")), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def template(kubeconfig: Path, namespace: str, *values: str) -> str:
    done = helm(kubeconfig, "template", "t", str(CHART), "-n", namespace, *KUBE, *values)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_helm_lint_is_clean(kubeconfig):
    done = helm(kubeconfig, "lint", str(CHART), "--strict")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([], id="defaults"),
        pytest.param(
            [
                "--set",
                "probe.vulkan.enabled=true",
                "--set",
                "resourceMode=vendor",
                "--set",
                "probe.runtimeClassName=nvidia",
                "--set",
                "probe.dcgmCompat=false",
            ],
            id="vulkan-vendor",
        ),
        pytest.param(
            ["--set", "operator.enabled=false", "--set", "probe.enabled=false"], id="scheduler-only"
        ),
        pytest.param(
            [
                "--set",
                "scheduler.enabled=false",
                "--set",
                "grafana.dashboard=false",
                "--set",
                "viewer.create=false",
            ],
            id="no-scheduler",
        ),
    ],
)
def test_every_rendered_object_passes_a_server_side_dry_run(kubeconfig, namespace, values):
    manifest = template(kubeconfig, namespace, *values)
    kinds = [d["kind"] for d in yaml.safe_load_all(manifest) if d]
    done = kubectl(kubeconfig, "apply", "--dry-run=server", "-f", "-", stdin=manifest)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(server dry run)") == len(kinds)
    if "operator.enabled=false" in values:
        assert "DaemonSet" not in kinds and kinds.count("Deployment") == 1
    if "scheduler.enabled=false" in values:
        assert "t-megagpu-scheduler" not in manifest and "megagpu-viewer" not in manifest


def qos_class(kubeconfig: Path, namespace: str, manifest: str) -> str:
    """The QoS class the API server gives a pod of the scheduler Deployment's template."""
    deployment = next(
        d
        for d in yaml.safe_load_all(manifest)
        if d and d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-scheduler")
    )
    spec = {**deployment["spec"]["template"]["spec"], "serviceAccountName": "default"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "qos"}, "spec": spec}
    create = ["create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-"]
    done = kubectl(kubeconfig, *create, stdin=json.dumps(pod))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["status"]["qosClass"]


def test_the_large_cluster_values_make_the_scheduler_pod_guaranteed(kubeconfig, namespace):
    """examples/chart/large-cluster.yaml (docs/operations.md): whole CPUs for the extender."""
    default_account = ["wait", "--for=create", "serviceaccount/default", "-n", namespace]
    ready = kubectl(kubeconfig, *default_account, "--timeout=60s")
    assert ready.returncode == 0, ready.stderr
    assert qos_class(kubeconfig, namespace, template(kubeconfig, namespace)) == "Burstable"
    large = template(kubeconfig, namespace, "-f", str(ROOT / "examples/chart/large-cluster.yaml"))
    assert qos_class(kubeconfig, namespace, large) == "Guaranteed"


def probe_container(manifest: str) -> tuple[dict, dict]:
    """The probe DaemonSet's pod spec and its container, as rendered."""
    ds = next(d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_the_chart_makes_the_priority_classes_the_operator_names(kubeconfig, namespace):
    docs = list(yaml.safe_load_all(template(kubeconfig, namespace)))
    rendered = {
        d["metadata"]["name"]: (d["value"], d["preemptionPolicy"])
        for d in docs
        if d and d["kind"] == "PriorityClass"
    }
    ours = {
        m["metadata"]["name"]: (m["value"], m["preemptionPolicy"]) for m in priorities.manifests()
    }
    assert rendered == ours
    operator = next(
        d for d in docs if d and d["kind"] == "Deployment" and "operator" in d["metadata"]["name"]
    )
    assert "--queue-by-size" in operator["spec"]["template"]["spec"]["containers"][0]["args"]
    # with preemption on, a shorter job's class would preempt a longer one of its own priority
    preempting = template(kubeconfig, namespace, "--set", "priorityClasses.preemption=true")
    assert "--queue-by-size" not in preempting


def test_the_probe_benchmarks_by_default_and_sees_gpus_as_configured(kubeconfig, namespace):
    pod, probe = probe_container(template(kubeconfig, namespace))
    assert "--benchmarks" in probe["args"] and "--benchmark-every=3600" in probe["args"]
    assert "runtimeClassName" not in pod and "privileged" not in probe["securityContext"]
    assert not any(e["name"].startswith("NVIDIA_") for e in probe["env"])

    values = ["--set", "probe.runtimeClassName=nvidia", "--set", "probe.vulkan.enabled=true"]
    values += ["--set", "probe.image.tag=0.1.0-gpu"]
    pod, probe = probe_container(template(kubeconfig, namespace, *values))
    env = {e["name"]: e.get("value") for e in probe["env"]}
    assert pod["runtimeClassName"] == "nvidia"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility,graphics"  # + NVIDIA's Vulkan
    assert probe["image"].endswith(":0.1.0-gpu")
    assert probe["securityContext"]["privileged"] is True  # opens /dev/dri/renderD*
    assert pod["securityContext"]["runAsUser"] == 0
    mounts = {m["mountPath"] for m in probe["volumeMounts"]}
    assert {"/dev/dri", "/tmp"} <= mounts and env["CUPY_CACHE_DIR"].startswith("/tmp")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        (["--set", "resourceMode=nvidia"], "resourceMode"),
        (["--set", "scheduler.httpTimeout=soon"], "httpTimeout"),
        (["--set", "probe.port=70000"], "port"),
        (["--set", "policy.mode=eager"], "mode"),
        (["--set", "operator.replicaz=2"], "replicaz"),
        (["--set", "probe.benchmarks.every=0"], "every"),
        (["--set", "probe.runtimeClassName=Nvidia_Runtime"], "runtimeClassName"),
    ],
)
def test_invalid_values_are_rejected_naming_the_field(kubeconfig, values, field):
    done = helm(kubeconfig, "template", "t", str(CHART), *KUBE, *values)
    assert done.returncode != 0
    assert field in done.stderr and "values don't meet the specifications" in done.stderr


def test_install_creates_every_object_upgrade_works_and_rbac_is_least_privilege(kubeconfig):
    ns = f"chart-{uuid.uuid4().hex[:6]}"
    release = "mg"
    installed = helm(
        kubeconfig, "install", release, str(CHART), "-n", ns, "--create-namespace", *DEV
    )
    try:
        assert installed.returncode == 0, installed.stderr
        manifest = helm(kubeconfig, "get", "manifest", release, "-n", ns).stdout
        objects = [d for d in yaml.safe_load_all(manifest) if d]
        found = kubectl(kubeconfig, "get", "-f", "-", "-o", "name", stdin=manifest)
        assert found.returncode == 0, found.stderr
        assert len(found.stdout.split()) == len(objects) >= 20

        upgraded = helm(
            kubeconfig,
            "upgrade",
            release,
            str(CHART),
            "-n",
            ns,
            *DEV,
            "--set",
            "operator.replicas=1",
            "--no-hooks",  # kwok runs no container: the CRD hook's Job is tested on its own
        )
        assert upgraded.returncode == 0, upgraded.stderr
        replicas = kubectl(
            kubeconfig,
            "get",
            "deploy",
            f"{release}-megagpu-operator",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.replicas}",
        )
        assert replicas.stdout == "1"

        def can(sa: str, *what: str) -> bool:
            who = f"system:serviceaccount:{ns}:{release}-megagpu-{sa}"
            done = kubectl(kubeconfig, "auth", "can-i", "--as", who, *what)
            return done.stdout.strip() == "yes"

        assert can("probe", "patch", "gpunodes.megagpu.io", "--subresource=status")
        assert can("probe", "patch", "nodes")
        assert not can("probe", "get", "secrets", "-A")
        assert not can("probe", "delete", "pods", "-A")
        assert can("scheduler", "create", "pods", "--subresource=binding", "-n", "default")
        assert can("scheduler", "list", "gpunodes.megagpu.io")
        assert not can("scheduler", "delete", "nodes")
        assert not can("scheduler", "get", "secrets", "-n", "default")
        assert can("operator", "create", "pods", "-n", "default")
        assert can(
            "operator", "patch", "gpuworkloads.megagpu.io", "--subresource=status", "-n", "default"
        )
        assert can("operator", "update", "configmaps", "-n", ns)
        assert not can("operator", "update", "configmaps", "-n", "default")
        assert not can("operator", "get", "secrets", "-A")

        viewer = "tui-viewer"
        kubectl(kubeconfig, "create", "serviceaccount", viewer, "-n", ns)
        kubectl(
            kubeconfig,
            "create",
            "clusterrolebinding",
            f"{ns}-viewer",
            "--clusterrole=megagpu-viewer",
            f"--serviceaccount={ns}:{viewer}",
        )
        who = ["--as", f"system:serviceaccount:{ns}:{viewer}"]
        for verb, resource in (
            ("list", "gpuworkloads.megagpu.io"),
            ("watch", "gpunodes.megagpu.io"),
            ("get", "gpuschedulingpolicies.megagpu.io"),
            ("list", "events"),
        ):
            assert (
                kubectl(kubeconfig, "auth", "can-i", *who, verb, resource, "-A").stdout.strip()
                == "yes"
            )
        for verb, resource in (
            ("create", "gpuworkloads.megagpu.io"),
            ("delete", "gpunodes.megagpu.io"),
            ("patch", "gpuschedulingpolicies.megagpu.io"),
            ("create", "pods"),
            ("get", "secrets"),
        ):
            assert (
                kubectl(kubeconfig, "auth", "can-i", *who, verb, resource, "-A").stdout.strip()
                == "no"
            )
    finally:
        kubectl(kubeconfig, "delete", "clusterrolebinding", f"{ns}-viewer", "--ignore-not-found")
        helm(kubeconfig, "uninstall", release, "-n", ns, "--no-hooks")
        kubectl(kubeconfig, "delete", "namespace", ns, "--wait=false")


def test_the_upgrade_hook_reapplies_the_crds_server_side_as_its_own_account(
    kubeconfig, namespace, tmp_path
):
    """The pre-upgrade hook's objects and command, run here: kwok's fake pods run no container."""
    rendered = helm(
        kubeconfig,
        "template",
        "t",
        str(CHART),
        "-n",
        namespace,
        *KUBE,
        "--show-only",
        "templates/crd-upgrade.yaml",
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert all(d["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade" for d in docs)
    job = next(d for d in docs if d["kind"] == "Job")
    files = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert sorted(files) == sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    account = [
        d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
    ]
    applied = kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(account))
    assert applied.returncode == 0, applied.stderr
    try:
        crd_dir = tmp_path / "crds"
        crd_dir.mkdir()
        for name, text in files.items():
            (crd_dir / name).write_text(text)
        token = kubectl(kubeconfig, "create", "token", "t-megagpu-crds", "-n", namespace).stdout
        config = yaml.safe_load(kubeconfig.read_text())
        config["users"] = [{"name": "hook", "user": {"token": token.strip()}}]
        for context in config["contexts"]:
            context["context"]["user"] = "hook"
        hook_config = tmp_path / "hook.kubeconfig"
        hook_config.write_text(yaml.safe_dump(config))
        # Someone else changes a field the chart sets; the hook's apply must take it back.
        crd = yaml.safe_load((CHART / "crds" / "gpuworkloads.yaml").read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        wanted, schema["description"] = schema["description"], "stale"
        taken = kubectl(
            kubeconfig,
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=someone-else",
            "-f",
            "-",
            stdin=yaml.safe_dump(crd),
        )
        assert taken.returncode == 0, taken.stderr
        path = "jsonpath={.spec.versions[0].schema.openAPIV3Schema.description}"
        before = kubectl(kubeconfig, "get", "crd", "gpuworkloads.megagpu.io", "-o", path)
        assert before.stdout == "stale"
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:2] == ["crds", "apply"]
        from tests.e2e.conftest import megagpu

        done = megagpu(*args[:2], f"--dir={crd_dir}", "--kubeconfig", str(hook_config))
        assert done.returncode == 0, done.stderr
        after = kubectl(kubeconfig, "get", "crd", "gpuworkloads.megagpu.io", "-o", path)
        assert after.stdout == wanted
        denied = kubectl(
            hook_config,
            "delete",
            "crd",
            "gpuworkloads.megagpu.io",
            "--dry-run=server",
        )
        assert denied.returncode != 0 and "forbidden" in denied.stderr
    finally:
        kubectl(
            kubeconfig,
            "delete",
            "-f",
            "-",
            "--ignore-not-found",
            stdin=yaml.safe_dump_all([d for d in account if d["kind"] != "ServiceAccount"]),
        )
