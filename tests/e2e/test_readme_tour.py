"""The README's five-minute tour, command by command, against the dev cluster."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest

from tests.e2e.conftest import ROOT, kubectl


def tour() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## A five-minute tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the tour has no bash block"
    commands = []
    for line in block[1].splitlines():
        command = line.split("  #", 1)[0].strip()
        if command:
            commands.append(command)
    return commands


def test_the_tour_has_the_main_steps():
    joined = "\n".join(tour())
    for step in (
        "megagpu dev up",
        "kubectl apply",
        "megagpu explain",
        "megagpu sim",
        "helm install",
    ):
        assert step in joined


def test_every_tour_command_succeeds_in_order(kubeconfig):
    kubectl(
        kubeconfig,
        "delete",
        "gw",
        "llama-inference",
        "-n",
        "default",
        "--ignore-not-found",
        "--wait=true",
    )
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    script = ["set -u"]
    for command in tour():
        script.append(command)
        failed = shlex.quote(f"FAILED: {command}")
        script.append(f"rc=$?; [ $rc -eq 0 ] || {{ echo {failed} rc=$rc; exit 1; }}")
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "Succeeded" in done.stdout and "placed on" in done.stdout
    finally:
        kubectl(
            kubeconfig, "delete", "namespace", "megagpu-tour", "--wait=false", "--ignore-not-found"
        )


@pytest.mark.parametrize("view", ["gpuworkloads", "gpunodes"])
def test_k9s_view_columns_are_valid_paths(kubeconfig, view):
    import yaml

    views = yaml.safe_load((ROOT / "examples/k9s/views.yaml").read_text())["views"]
    columns = views[f"megagpu.io/v1alpha1/{view}"]["columns"]
    paths = [c for c in columns if ":" in c]
    assert paths
    spec = ",".join(["NAME:.metadata.name", *paths])
    done = kubectl(kubeconfig, "get", view, "-A", "-o", f"custom-columns={spec}")
    assert done.returncode == 0, done.stderr


def test_k9s_plugins_run(kubeconfig, api, namespace):
    import yaml

    from tests.e2e import gw
    from tests.e2e.conftest import megagpu

    gw.create(api, namespace, gw.manifest("k9s", "inference", "llama3-8b-q4", 1, ["cuda"]))
    gw.wait_phase(api, namespace, "k9s", ("Succeeded",), 90)
    plugins = yaml.safe_load((ROOT / "examples/k9s/plugins.yaml").read_text())["plugins"]
    for name, plugin in plugins.items():
        assert plugin["command"] == "megagpu"
        args = [a.replace("$NAMESPACE", namespace).replace("$NAME", "k9s") for a in plugin["args"]]
        if args[0] == "tui":
            args.append("--help")  # interactive; the tmux test runs it for real
        else:
            args += ["--kubeconfig", str(kubeconfig)]
        done = megagpu(*args)
        assert done.returncode == 0, (name, done.stderr)
