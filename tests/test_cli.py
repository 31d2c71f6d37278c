import json
import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "megagpu", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_help_lists_every_subcommand():
    out = run("--help")
    assert out.returncode == 0
    for name in ("sim", "dev", "exec"):
        assert name in out.stdout


def test_sim_on_files_writes_a_report(tmp_path):
    from megagpu.io import presets

    cluster = tmp_path / "c.yaml"
    cluster.write_text(
        "nodes:\n- {name_prefix: v, count: 2, device: v100, devices_per_node: 4,"
        " memory_mib_per_device: 32768, backends: [cuda]}\n"
        "- {name_prefix: k, count: 2, device: k80, devices_per_node: 4,"
        " memory_mib_per_device: 12288, backends: [cuda]}\n"
    )
    trace = tmp_path / "w.csv"
    lines = (presets.DATA / "gavel_trace_0e4a51.csv").read_text().splitlines()[:120]
    trace.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.json"
    res = run(
        "sim",
        "--cluster",
        str(cluster),
        "--throughputs",
        str(presets.DATA / "gavel_throughputs.csv"),
        "--trace",
        str(trace),
        "--policies",
        "least_allocated,learned",
        "--seeds",
        "2",
        "--json",
        str(out),
        "--drop-oversized",
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert doc["policies"] == ["least_allocated", "learned"] and doc["seeds"] == [0, 1]
    assert "learned" in res.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["sim"], "give --preset"),
        (["sim", "--preset", "nope"], "unknown preset"),
        (["sim", "--preset", "gavel-0.3", "--policies", "fifo"], "unknown policy"),
        (
            ["sim", "--cluster", "/no/such.yaml", "--throughputs", "x", "--trace", "y"],
            "cannot read",
        ),
    ],
)
def test_sim_mistakes_are_one_line_errors(args, needle):
    res = run(*args)
    assert res.returncode in (1, 2)
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_list_presets():
    res = run("sim", "--list-presets")
    assert res.returncode == 0
    for name in (
        "gavel-0.3",
        "gavel-0.5",
        "gavel-0.7",
        "openb",
        "llm-serving",
        "stress",
        "stress-a100",
    ):
        assert name in res.stdout
