"""The real nodes' pod network: one bridge, the sysctls it needs, and a rule that keeps pods here.

Everything this module changes on the machine is recorded in a JSON file before it is changed,
so ``down`` restores exactly that (sysctls to their earlier values, the rule and the bridge
removed), also after a crash of ``up``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from megagpu.devcluster import nodeconfig
from megagpu.devcluster.errors import DevClusterError

SYSCTLS = {
    # A ClusterIP whose endpoint is a pod on the same bridge is DNATed by the host and forwarded
    # back to the bridge; bridged replies must pass iptables to be un-NATed.
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}
KEEP_LOCAL = ["FORWARD", "-i", nodeconfig.BRIDGE, "!", "-o", nodeconfig.BRIDGE, "-j", "DROP"]
"""Pods reach the API server and each other through the bridge, and nothing beyond it."""


def _loopback_rule(port: int) -> list[str]:
    return [
        "OUTPUT",
        "-d",
        "127.0.0.1/32",
        "-p",
        "tcp",
        "--dport",
        str(port),
        "-j",
        "DNAT",
        "--to-destination",
        f"{nodeconfig.gateway()}:{port}",
    ]


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DevClusterError(
            f"{what} failed: `{' '.join(argv)}` said {done.stderr.strip() or done.returncode}; "
            "real nodes need root (ip, iptables and sysctls) on Linux"
        )


def bridge_exists() -> bool:
    """Whether this network namespace has the bridge (asked of ip: sysfs may show another's)."""
    show = ["ip", "link", "show", nodeconfig.BRIDGE]
    return subprocess.run(show, capture_output=True, check=False).returncode == 0


def namespace() -> str:
    """The network namespace of this process (``net:[inode]``)."""
    return os.readlink("/proc/self/ns/net")


def write_atomically(path: Path, data: object) -> None:
    """Write JSON so that a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def up(record: Path) -> None:
    """Create the bridge with the gateway address, set the sysctls, add the keep-local rule.

    One cluster with real nodes per network namespace: a bridge this record did not make
    belongs to another dev cluster, and ``up`` refuses instead of sharing it.
    """
    previous = json.loads(record.read_text()) if record.exists() else {}
    if bridge_exists() and not previous.get("bridge"):
        raise DevClusterError(
            f"another dev cluster with real nodes runs in this network namespace (bridge "
            f"{nodeconfig.BRIDGE}): stop it (megagpu dev down), or start this one in a network "
            "namespace of its own (as make test does)"
        )
    sysctls = previous.get("sysctls", {})
    for key in SYSCTLS:
        path = Path("/proc/sys") / key
        if not path.exists():
            raise DevClusterError(
                f"{path} is missing: the kernel has no bridge netfilter; real nodes need it "
                "(load br_netfilter) or run with --real-nodes 0"
            )
        sysctls.setdefault(key, path.read_text().strip())
    state = {**previous, "sysctls": sysctls, "bridge": True, "netns": namespace()}
    write_atomically(record, state)
    if not bridge_exists():
        _run(["ip", "link", "add", nodeconfig.BRIDGE, "type", "bridge"], "creating the bridge")
    address = f"{nodeconfig.gateway()}/{nodeconfig.POD_NETWORK.prefixlen}"
    _run(["ip", "addr", "replace", address, "dev", nodeconfig.BRIDGE], "addressing the bridge")
    _run(["ip", "link", "set", nodeconfig.BRIDGE, "up"], "starting the bridge")
    for key, value in SYSCTLS.items():
        (Path("/proc/sys") / key).write_text(value)
    check = subprocess.run(["iptables", "-C", *KEEP_LOCAL], capture_output=True, check=False)
    if check.returncode != 0:
        _run(["iptables", "-I", *KEEP_LOCAL], "adding the keep-local forwarding rule")


def forward_loopback(record: Path, ports: list[int]) -> None:
    """Let this machine's clients reach control-plane listeners on the gateway at 127.0.0.1.

    With real nodes the control plane listens on the bridge's gateway (pods cannot reach this
    machine's loopback), while kwokctl, its components and every kubeconfig say 127.0.0.1:
    locally made connections to those ports are redirected to the gateway (no traffic leaves).
    """
    done = json.loads(record.read_text())
    done["loopback_ports"] = sorted(set(done.get("loopback_ports", [])) | set(ports))
    write_atomically(record, done)
    for port in ports:
        _run(["iptables", "-t", "nat", "-A", *_loopback_rule(port)], "redirecting a local port")


def down(record: Path) -> list[str]:
    """Undo what ``up`` recorded, in the namespace it was made in; returns what was undone."""
    if not record.exists():
        return []
    done = json.loads(record.read_text())
    if done.get("netns", namespace()) != namespace():
        record.unlink()  # that namespace is gone with its processes, or is not ours to change
        return [f"nothing here: the changes were made in network namespace {done['netns']}"]
    undone = []
    while subprocess.run(["iptables", "-D", *KEEP_LOCAL], capture_output=True).returncode == 0:
        undone.append("forwarding rule")
    for port in done.get("loopback_ports", []):
        delete = ["iptables", "-t", "nat", "-D", *_loopback_rule(port)]
        while subprocess.run(delete, capture_output=True).returncode == 0:
            undone.append(f"loopback redirect of port {port}")
    if done.get("bridge") and bridge_exists():
        _run(["ip", "link", "del", nodeconfig.BRIDGE], "deleting the bridge")
        undone.append(f"bridge {nodeconfig.BRIDGE}")
    for key, value in done.get("sysctls", {}).items():
        (Path("/proc/sys") / key).write_text(value)
        undone.append(f"{key.replace('/', '.')}={value}")
    record.unlink()
    return undone
