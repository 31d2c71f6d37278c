"""``megagpu probe`` with simulated devices, as a real node without GPUs runs it."""

import json
import os

import pytest

from tests.test_cli import run


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_simulated_devices_stand_in_for_the_backend_with_the_class_as_product(tmp_path):
    sim = tmp_path / "sim"
    (sim).mkdir()
    (sim / "gpu2.unhealthy").touch()
    res = run(
        "probe",
        "--once",
        "--simulated-devices",
        "3",
        "--simulated-class",
        "h100",
        "--simulated-memory-mib",
        "81920",
        "--sim-dir",
        str(sim),
        "--recover-after",
        "0",
    )
    assert res.returncode == 0, res.stderr
    cuda = json.loads(res.stdout)["backends"]["cuda"]
    assert cuda["available"] and cuda["driver_version"] == "simulated"
    assert [(d["uuid"], d["name"], d["healthy"]) for d in cuda["devices"]] == [
        ("sim-0", "h100", True),
        ("sim-1", "h100", True),
        ("sim-2", "h100", False),
    ]
    assert sorted(p.name for p in sim.iterdir()) == ["gpu0", "gpu1", "gpu2", "gpu2.unhealthy"]


def test_a_bad_simulated_device_count_is_a_one_line_error():
    res = run("probe", "--once", "--simulated-devices", "-1")
    assert res.returncode in (1, 2) and "simulated devices" in res.stderr
    assert "Traceback" not in res.stderr
