"""The dashboard against the dev cluster: in a real terminal (tmux), and with read-only RBAC."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from megagpu.tui.cluster_source import ClusterSource
from tests.e2e import gw
from tests.e2e.conftest import restart_apiserver
from tests.e2e.test_scheduler_extender import wait_for

NAMES = [f"tui-{i}" for i in range(len(gw.MIX))]


def until(get, ok, timeout_s: float, what: str):
    """The first value of ``get()`` that ``ok`` accepts."""
    return wait_for(lambda: value if ok(value := get()) else None, timeout_s, what)


class Terminal:
    """A tmux session on a private server, 160x45."""

    def __init__(self, command: list[str], log_dir: Path) -> None:
        self.socket = f"megagpu-e2e-{uuid.uuid4().hex[:8]}"
        self.log_dir, self.shots = log_dir, 0
        self._tmux("new-session", "-d", "-s", "tui", "-x", "160", "-y", "45", *command)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False
        )
        return done.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "tui")

    def press(self, *keys: str) -> None:
        for key in keys:
            self._tmux("send-keys", "-t", "tui", key)

    def wait_screen(self, predicate, what: str, timeout_s: float = 90) -> str:
        try:
            return until(self.screen, predicate, timeout_s, what)
        finally:
            self.save(what)

    def save(self, what: str) -> None:
        self.shots += 1
        name = re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")[:50]
        (self.log_dir / f"{self.shots:02d}-{name}.txt").write_text(self.screen())

    def alive(self) -> bool:
        return "tui" in self._tmux("list-sessions")

    def close(self) -> None:
        self._tmux("kill-server")


def counters(screen: str) -> tuple[int, int]:
    found = re.search(r"decisions (\d+)\s+updates (\d+)", screen)
    assert found, screen
    return int(found[1]), int(found[2])


@pytest.fixture
def terminal(kubeconfig, namespace, tmp_path):
    shots = Path(tmp_path) / "screens"
    shots.mkdir()
    # Textual prefers $COLUMNS and $LINES to the terminal's size: let tmux's size count.
    command = ["env", "-u", "COLUMNS", "-u", "LINES", sys.executable, "-m", "megagpu", "tui"]
    command += ["--kubeconfig", str(kubeconfig)]
    term = Terminal([*command, "-n", namespace, "--refresh", "0.5"], shots)
    yield term
    print(f"screens captured in {shots}")
    term.close()


def test_tui_in_tmux_follows_workloads_decisions_and_an_apiserver_restart(api, namespace, terminal):
    first = terminal.wait_screen(lambda s: "connected" in s and "Agent" in s, "first frame")
    assert f"ns {namespace}" in first and "a100 (simulated)" in first
    before = counters(first)

    terminal.press("2")
    terminal.wait_screen(lambda s: ":workloads" in s, "workloads view")
    for name, (kind, model, gpus, backends) in zip(NAMES, gw.MIX, strict=True):
        gw.create(api, namespace, gw.manifest(name, kind, model, gpus, backends))
    terminal.wait_screen(lambda s: all(n in s for n in NAMES), "every workload row appears")
    done = terminal.wait_screen(
        lambda s: sum(line.count("Succeeded") for line in s.splitlines()) >= len(NAMES),
        "every workload succeeded",
        timeout_s=180,
    )
    rows = [line for line in done.splitlines() if any(f" {n} " in line for n in NAMES)]
    assert len(rows) == len(NAMES)
    assert all(re.search(r"\b(exploit|explore|forced)\b", r) for r in rows), rows
    assert all(re.search(r"[+-]\d\.\d\d", r) for r in rows), rows  # the reward column

    terminal.press("1")
    dashboard = terminal.wait_screen(lambda s: ":dashboard" in s, "agent counters moved")
    decisions, updates = counters(dashboard)
    assert decisions >= before[0] + len(NAMES) and updates >= before[1] + len(NAMES)

    terminal.press("2")
    restart_apiserver()
    gw.create(api, namespace, gw.manifest("tui-after", "inference", "llama3-8b-q4", 1, ["cuda"]))
    terminal.wait_screen(
        lambda s: "tui-after" in s and "connected" in s, "reconnected after the restart", 120
    )

    terminal.press("q")
    wait_for(lambda: not terminal.alive(), 10, "the dashboard to quit on q")


def test_tui_with_read_only_rbac_says_which_permission_is_missing(api, namespace, kubeconfig):
    rbac, core = client.RbacAuthorizationV1Api(api), client.CoreV1Api(api)
    name = f"megagpu-tui-e2e-{namespace}"
    rule = client.V1PolicyRule
    rbac.create_cluster_role(
        client.V1ClusterRole(
            metadata=client.V1ObjectMeta(name=name),
            rules=[
                rule(
                    api_groups=["megagpu.io"],
                    resources=["gpuworkloads", "gpuschedulingpolicies"],
                    verbs=["get", "list", "watch"],
                ),
                rule(
                    api_groups=[""], resources=["nodes", "events"], verbs=["get", "list", "watch"]
                ),
            ],
        )
    )
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="viewer"))
    )
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="viewer", namespace=namespace)
            ],
        )
    )
    source = None
    try:
        token = core.create_namespaced_service_account_token(
            "viewer",
            namespace,
            client.AuthenticationV1TokenRequest(spec={"expirationSeconds": 600}),
        ).status.token
        config = yaml.safe_load(kubeconfig.read_text())
        config["users"] = [{"name": "viewer", "user": {"token": token}}]
        for context in config["contexts"]:
            context["context"]["user"] = "viewer"
        viewer = Path(kubeconfig).parent / f"viewer-{namespace}.yaml"
        viewer.write_text(yaml.safe_dump(config))
        gw.create(api, namespace, gw.manifest("seen", "inference", "llama3-8b-q4", 1, ["cuda"]))
        source = ClusterSource.connect(viewer, namespace)
        source.start()
        health = until(
            source.health,
            lambda h: "gpus" in h.problems and h.connection == "connected",
            60,
            "the GpuNode panel to report the missing permission",
        )
        assert "forbidden" in health.problems["gpus"] and "gpunodes" in health.problems["gpus"]
        assert set(health.problems) == {"gpus"}
        objects = until(source.objects, lambda o: o.workloads, 30, "workloads")
        assert [w["metadata"]["name"] for w in objects.workloads] == ["seen"]
        listed = client.CoreV1Api(api).list_node().items
        assert len(objects.nodes) == len(listed) and objects.gpunodes == []
        viewer.unlink()
    finally:
        if source is not None:
            source.stop()
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
