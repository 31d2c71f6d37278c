"""The real nodes' network changes, made and undone in a network namespace of the test's own."""

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, subprocess, sys
    from pathlib import Path
    from megagpu.devcluster import network, nodeconfig

    def state():
        rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
        nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
        return {
            "bridge": network.bridge_exists(),
            "address": nodeconfig.gateway() in subprocess.run(
                ["ip", "-4", "addr"], capture_output=True, text=True).stdout,
            "forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
            "keep_local": "megagpu0" in rules,
            "redirects": nat.count(nodeconfig.gateway()),
        }

    record = Path(sys.argv[1])
    Path("/proc/sys/net/ipv4/ip_forward").write_text("0")  # a new namespace may inherit 1
    before = state()
    network.up(record)
    network.up(record)  # twice: nothing is added twice, the first values are kept
    network.forward_loopback(record, [40001, 40002])
    during = state()
    undone = network.down(record)
    print(json.dumps({"before": before, "during": during, "after": state(), "undone": undone,
                      "record_left": record.exists()}))
    """
)


def test_up_then_down_leaves_the_namespace_as_it_was(tmp_path):
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", SCRIPT, str(tmp_path / "net.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["during"] == {
        "bridge": True,
        "address": True,
        "forward": "1",
        "keep_local": True,
        "redirects": 2,
    }
    assert seen["after"] == seen["before"]
    assert seen["before"]["bridge"] is False and seen["before"]["forward"] == "0"
    assert not seen["record_left"]
    assert "bridge megagpu0" in seen["undone"]
