import os
import subprocess
import sys

import pytest

SHOW = 'echo "$CUDA_VISIBLE_DEVICES|$CUDA_DEVICE_ORDER|$GGML_VK_VISIBLE_DEVICES|$KEPT"; exit 7'


def environment(**assignment: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEGAGPU_", "CUDA_", "GGML_"))}
    env.pop("NVIDIA_VISIBLE_DEVICES", None)
    return {**env, "KEPT": "yes", **assignment}


def run_exec(*command: str, **assignment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "megagpu", "exec", *command],
        env=environment(**assignment),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cuda_command_runs_with_the_assigned_devices_and_keeps_its_exit_code():
    out = run_exec("--", "sh", "-c", SHOW, MEGAGPU_BACKEND="cuda", MEGAGPU_DEVICES="2,0")
    assert out.returncode == 7, out.stderr
    assert out.stdout == "2,0|PCI_BUS_ID||yes\n"


def test_vulkan_command_gets_ggml_devices_and_replaces_what_was_set():
    out = run_exec(
        "sh",
        "-c",
        SHOW,
        MEGAGPU_BACKEND="vulkan",
        MEGAGPU_DEVICES="1",
        GGML_VK_VISIBLE_DEVICES="0,1,2",
    )
    assert out.returncode == 7, out.stderr
    assert out.stdout == "||1|yes\n"


def test_the_command_replaces_the_process():
    with subprocess.Popen(
        [sys.executable, "-m", "megagpu", "exec", "--", "sh", "-c", "echo $$"],
        env=environment(MEGAGPU_BACKEND="cpu", MEGAGPU_DEVICES=""),
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        shell_pid, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert int(shell_pid) == proc.pid


def test_a_missing_command_exits_127_like_a_shell():
    out = run_exec("--", "no-such-command-xyz", MEGAGPU_BACKEND="cpu", MEGAGPU_DEVICES="")
    assert out.returncode == 127
    assert out.stderr == "megagpu exec: no-such-command-xyz: command not found\n"


def test_a_command_that_cannot_run_exits_126(tmp_path):
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    out = run_exec("--", str(script), MEGAGPU_BACKEND="cpu", MEGAGPU_DEVICES="")
    assert out.returncode == 126
    assert "cannot run: Permission denied" in out.stderr


@pytest.mark.parametrize(
    ("args", "assignment", "message"),
    [
        ((), {"MEGAGPU_BACKEND": "cpu", "MEGAGPU_DEVICES": ""}, "give the command to run after --"),
        (("--",), {"MEGAGPU_BACKEND": "cpu", "MEGAGPU_DEVICES": ""}, "give the command"),
        (("--", "true"), {}, "MEGAGPU_BACKEND is not set"),
        (("--", "true"), {"MEGAGPU_BACKEND": "cuda"}, "MEGAGPU_DEVICES is not set"),
        (
            ("--", "true"),
            {"MEGAGPU_BACKEND": "", "MEGAGPU_DEVICES": ""},
            "MEGAGPU_BACKEND is empty",
        ),
        (("--", "true"), {"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": "a"}, "'a' is not"),
    ],
)
def test_mistakes_exit_2_with_one_line_and_no_traceback(args, assignment, message):
    out = run_exec(*args, **assignment)
    assert out.returncode == 2
    assert out.stderr.startswith("error: megagpu exec: ") and message in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
