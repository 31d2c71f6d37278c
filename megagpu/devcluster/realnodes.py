"""Real nodes beside kwok's fake ones: containerd, a kubelet and kube-proxy on this machine.

Each real node runs its own containerd (built from its Go module release) and its own kubelet of
the cluster's release, with state in ``/var/lib/megagpu-dev/<cluster>/<node>`` and sockets in
``/run/megagpu-dev/<cluster>/<node>``; one kube-proxy routes ClusterIPs for all of them (they
share this machine's network namespace). Their mounts live in each node's own mount namespace,
which ends with its processes. ``stop`` removes pods through the CRI (crictl), stops every
process by pid, removes the node's cgroups and deletes those directories.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from megagpu.devcluster import binaries, images, kubectl, network, nodeconfig, processes
from megagpu.devcluster.errors import DevClusterError
from megagpu.devcluster.nodeconfig import RealNode

STATE_ROOT = Path("/var/lib/megagpu-dev")
RUN_ROOT = Path("/run/megagpu-dev")
PROXY = "kube-proxy"
MAX_NODES = 16
"""Each takes a /24 of the pod network and a kubelet's memory on this one machine."""
READY_TIMEOUT_S = 120.0
READY_PATH = "{.status.conditions[?(@.type=='Ready')].status}"
Output = Callable[[str], None]


def plan(cluster: str, count: int, gpus: int = 4, device_class: str = "sim") -> list[RealNode]:
    """Names, directories, ports and simulated devices of ``count`` real nodes of ``cluster``."""
    if not 0 <= count <= MAX_NODES:
        raise DevClusterError(f"--real-nodes takes 0 to {MAX_NODES}, not {count}")
    nodes = []
    for i in range(count):
        name = f"{cluster}-real-{i}"
        nodes.append(
            RealNode(
                name=name,
                index=i,
                state=STATE_ROOT / cluster / name,
                run=RUN_ROOT / cluster / name,
                kubelet_port=processes.free_port(),
                healthz_port=processes.free_port(),
                probe_port=processes.free_port(),
                gpus=gpus,
                device_class=device_class,
            )
        )
    return nodes


def _record(pids: Path) -> Path:
    return pids / "real-nodes.json"


def recorded(pids: Path) -> list[RealNode]:
    """The real nodes a running cluster started (empty when it has none)."""
    path = _record(pids)
    if not path.exists():
        return []
    rows = json.loads(path.read_text())["nodes"]
    return [RealNode(**{**n, "state": Path(n["state"]), "run": Path(n["run"])}) for n in rows]


def _created(pids: Path) -> list[Path]:
    path = _record(pids)
    return [Path(d) for d in json.loads(path.read_text())["created"]] if path.exists() else []


def _save(pids: Path, nodes: Sequence[RealNode], created: Sequence[Path] = ()) -> None:
    """Record the nodes and the directories made outside their state (removed by ``stop``)."""
    rows = [{**dataclasses.asdict(n), "state": str(n.state), "run": str(n.run)} for n in nodes]
    record = {"nodes": rows, "created": [str(d) for d in created], "netns": network.namespace()}
    network.write_atomically(_record(pids), record)


def _same_namespace(pids: Path) -> bool:
    """Whether this process runs in the network namespace the real nodes were started in."""
    path = _record(pids)
    recorded_ns = json.loads(path.read_text()).get("netns") if path.exists() else None
    return recorded_ns in (None, network.namespace())


def _plugin_mountpoint() -> list[Path]:
    """Make ``/var/lib/kubelet/device-plugins`` to mount over; returns the directories made."""
    made = [
        d
        for d in (nodeconfig.KUBELET_DEVICE_PLUGINS, *nodeconfig.KUBELET_DEVICE_PLUGINS.parents)
        if not d.exists()
    ]
    nodeconfig.KUBELET_DEVICE_PLUGINS.mkdir(parents=True, exist_ok=True)
    return made


def preflight() -> None:
    """Fail fast, with what to do, where this machine cannot run a kubelet."""
    if os.geteuid() != 0:
        raise DevClusterError("real nodes need root (a kubelet, containerd and a bridge)")
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables")):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise DevClusterError(f"{tool} is missing: run `make host-packages` (Debian {package})")
    if not nodeconfig.RUNC.exists():
        raise DevClusterError(f"{nodeconfig.RUNC} is missing: run `make host-packages` (runc)")
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not (nodeconfig.CNI_PLUGINS / plugin).exists():
            raise DevClusterError(
                f"the CNI plugin {plugin} is missing in {nodeconfig.CNI_PLUGINS}: run "
                "`make host-packages` (Debian containernetworking-plugins)"
            )
    missing = [c for c in ("cpu", "memory", "pids") if not Path(f"/sys/fs/cgroup/{c}").exists()]
    if missing and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        raise DevClusterError(
            f"the cgroup controllers {', '.join(missing)} are not mounted; a kubelet cannot run"
        )


def start(
    nodes: Sequence[RealNode],
    kubeconfig: Path,
    ca_file: Path,
    logs: Path,
    pids: Path,
    archives: Sequence[images.Archive],
    out: Output,
    *,
    probes: bool = True,
) -> None:
    """Start containerd, a kubelet and a probe per node, and one kube-proxy.

    Returns when every node is Ready and its kubelet offers the probe's devices. Without
    ``probes`` (the chart's probe DaemonSet serves the device plugin) no probe is started.
    """
    _save(pids, nodes, _plugin_mountpoint())
    for node in nodes:
        _start_containerd(node, logs, pids)
    for node in nodes:
        _wait_socket(node, logs)
        images.load_all(archives, binaries.binary("ctr"), [node.containerd_socket], out)
        _start_kubelet(node, kubeconfig, ca_file, logs, pids)
    if nodes:
        _start_proxy(nodes[0], kubeconfig, logs, pids)
    for node in nodes:
        wait_ready(node, kubeconfig, logs, pids)
        if probes:
            _start_probe(node, kubeconfig, logs, pids)
    for node in nodes:
        if probes:
            _wait_devices(node, kubeconfig, logs)
        devices = f"{node.gpus} simulated {node.device_class} devices" if probes else "no probe"
        out(f"real node {node.name} is Ready ({devices}; containerd {node.containerd_socket})")


def _start_containerd(node: RealNode, logs: Path, pids: Path) -> None:
    for d in (node.state, node.run, node.cni_conf_dir, node.kubelet_dir, node.device_plugin_dir):
        d.mkdir(parents=True, exist_ok=True)
    node.containerd_config.write_text(nodeconfig.containerd_toml(node))
    (node.cni_conf_dir / "10-megagpu.conflist").write_text(nodeconfig.cni_conflist(node))
    # The node's own mount namespace (containerd, its shims and containers, and the kubelet,
    # which enters it): its device plugin directory is bound where the kubelet looks.
    argv = [
        "unshare",
        "--mount",
        "--",
        "sh",
        "-c",
        'mount --bind "$1" "$2" && shift 2 && exec "$@"',
        "sh",
        str(node.device_plugin_dir),
        str(nodeconfig.KUBELET_DEVICE_PLUGINS),
        str(binaries.binary("containerd")),
        "--config",
        str(node.containerd_config),
    ]
    path = f"{binaries.bin_dir()}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    processes.start(f"containerd-{node.name}", argv, logs, pids, env={"PATH": path})


def _wait_socket(node: RealNode, logs: Path) -> None:
    deadline = time.monotonic() + 30
    while not crictl(node, ["info"], check=False).returncode == 0:
        if time.monotonic() > deadline:
            raise DevClusterError(
                f"containerd of {node.name} did not answer on {node.containerd_socket} in 30s; "
                f"see {logs / f'containerd-{node.name}.log'}"
            )
        time.sleep(0.3)


def crictl(
    node: RealNode, args: Sequence[str], *, check: bool = True, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """``crictl`` against the node's containerd."""
    endpoint = f"unix://{node.containerd_socket}"
    argv = [str(binaries.binary("crictl")), "-r", endpoint, "-i", endpoint, *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        raise DevClusterError(
            f"crictl {' '.join(args)} on {node.name}: containerd did not answer in {timeout_s:.0f}s"
        ) from e
    if check and done.returncode != 0:
        raise DevClusterError(f"crictl {' '.join(args)} on {node.name}: {done.stderr.strip()}")
    return done


def _make_cgroup_root(node: RealNode) -> None:
    """The kubelet wants its cgroup root to exist in every hierarchy (cpuset ones populated)."""
    for top in _hierarchies():
        path = top
        for part in ("megagpu-dev", node.name):
            parent, path = path, path / part
            path.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (path / knob).exists() and not (path / knob).read_text().strip():
                    (path / knob).write_text((parent / knob).read_text())


def _hierarchies() -> list[Path]:
    """The cgroup v1 hierarchies (or the one v2 hierarchy) mounted under /sys/fs/cgroup."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return [root]
    with open("/proc/self/mounts") as f:
        mounts = [line.split() for line in f]
    return [Path(m[1]) for m in mounts if m[2] == "cgroup" and m[1].startswith(str(root))]


def _start_kubelet(node: RealNode, kubeconfig: Path, ca_file: Path, logs: Path, pids: Path) -> None:
    _make_cgroup_root(node)
    node.kubelet_config.write_text(nodeconfig.kubelet_yaml(node, ca_file))
    namespace = f"/proc/{processes.pids(pids)[f'containerd-{node.name}']}/ns/mnt"
    argv = [
        "nsenter",
        f"--mount={namespace}",
        "--",
        str(binaries.binary("kubelet")),
        "--config",
        str(node.kubelet_config),
        "--kubeconfig",
        str(kubeconfig),
        "--root-dir",
        str(node.kubelet_dir),
        "--hostname-override",
        node.name,
        "--node-ip",
        nodeconfig.gateway(),
        "--node-labels",
        f"{nodeconfig.LABEL}=true",
    ]
    processes.start(f"kubelet-{node.name}", argv, logs, pids)


def _start_probe(node: RealNode, kubeconfig: Path, logs: Path, pids: Path) -> None:
    """The node's probe: GpuNode, labels and the device plugin for its simulated devices."""
    argv = [
        sys.executable,
        "-m",
        "megagpu",
        "probe",
        "--publish",
        "--device-plugin",
        "--node-name",
        node.name,
        "--kubeconfig",
        str(kubeconfig),
        "--kubelet-dir",
        str(node.kubelet_dir),
        "--device-plugin-dir",
        str(node.device_plugin_dir),
        "--simulated-devices",
        str(node.gpus),
        "--simulated-class",
        node.device_class,
        "--sim-dir",
        sim_dir(node.state.parent.name),
        "--listen",
        f"127.0.0.1:{node.probe_port}",
        "--interval",
        "5",
    ]
    processes.start(f"probe-{node.name}", argv, logs, pids, env={"PYTHONUNBUFFERED": "1"})


def _wait_devices(node: RealNode, kubeconfig: Path, logs: Path) -> None:
    """Wait until the kubelet advertises the node's devices (the plugin registered)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    path = "{.status.allocatable.megagpu\\.io/gpu}"
    while True:
        done = kubectl.run(
            kubeconfig, ["get", "node", node.name, "-o", f"jsonpath={path}"], check=False
        )
        if done.returncode == 0 and done.stdout.strip() == str(node.gpus):
            return
        if time.monotonic() > deadline:
            raise DevClusterError(
                f"{node.name} does not offer its {node.gpus} devices (allocatable "
                f"{done.stdout.strip() or 'none'}); see {logs / f'probe-{node.name}.log'}"
            )
        time.sleep(0.5)


def _start_proxy(node: RealNode, kubeconfig: Path, logs: Path, pids: Path) -> None:
    config = node.state.parent / "kube-proxy.yaml"
    config.write_text(
        nodeconfig.kube_proxy_yaml(
            kubeconfig, node.name, processes.free_port(), processes.free_port()
        )
    )
    argv = [str(binaries.binary("kube-proxy")), "--config", str(config)]
    processes.start(PROXY, argv, logs, pids)


def node_ready(node: RealNode, kubeconfig: Path) -> bool:
    """Whether the API server has the node with condition Ready=True."""
    done = kubectl.run(
        kubeconfig,
        ["get", "node", node.name, "-o", f"jsonpath={READY_PATH}"],
        check=False,
        timeout_s=15,
    )
    return done.returncode == 0 and done.stdout.strip() == "True"


def kubelet_healthy(node: RealNode) -> bool:
    """Whether this node's kubelet process answers its healthz endpoint."""
    url = f"http://127.0.0.1:{node.healthz_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(node: RealNode, kubeconfig: Path, logs: Path, pids: Path) -> None:
    """Wait for a healthy kubelet and a Ready node; an error names the kubelet's last error."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    log = logs / f"kubelet-{node.name}.log"
    while not (kubelet_healthy(node) and node_ready(node, kubeconfig)):
        pid = processes.pids(pids).get(f"kubelet-{node.name}")
        dead = pid is not None and not processes.alive(pid)
        if dead or time.monotonic() > deadline:
            raise DevClusterError(
                f"the kubelet of {node.name} {'exited' if dead else 'is not Ready'}: "
                f"{_last_error(log)}; see {log}"
            )
        time.sleep(0.5)


def _last_error(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("E")]
        if lines:
            return lines[-1][-300:]
    return "no error logged"


def status(nodes: Sequence[RealNode], kubeconfig: Path, pids: Path) -> list[str]:
    """One line per real node: Ready or what is wrong."""
    running = processes.pids(pids)
    lines = []
    for node in nodes:
        expected = [f"containerd-{node.name}", f"kubelet-{node.name}"]
        expected += [f"probe-{node.name}"] if f"probe-{node.name}" in running else []
        dead = [f"{w} not running" for w in expected if not processes.alive(running.get(w, 0))]
        state = "Ready" if not dead and node_ready(node, kubeconfig) else "NotReady"
        lines.append(f"real node {node.name}: {state}{'; ' + ', '.join(dead) if dead else ''}")
    return lines


def stop(pids: Path, out: Output) -> None:
    """Remove the pods through the CRI, stop every real-node process, unmount, delete state."""
    nodes = recorded(pids)
    created = _created(pids)
    same_namespace = _same_namespace(pids)  # else its iptables rules went with that namespace
    running = processes.pids(pids)
    for node in nodes:
        processes.stop_one(f"probe-{node.name}", pids)
        processes.stop_one(f"kubelet-{node.name}", pids)
    if PROXY in running:
        processes.stop_one(PROXY, pids)
        if same_namespace:
            subprocess.run(
                [str(binaries.binary("kube-proxy")), "--cleanup"], capture_output=True, check=False
            )
    if nodes and same_namespace:
        _remove_kubelet_chains()
    for node in nodes:
        if processes.alive(running.get(f"containerd-{node.name}", 0)):
            with contextlib.suppress(DevClusterError):  # a hung runtime: its processes go next
                crictl(node, ["rmp", "--all", "--force"], check=False, timeout_s=120)
        processes.stop_one(f"containerd-{node.name}", pids)
        _kill_shims(node)
        _remove_cgroups(node)
        for d in (node.run, node.state):
            shutil.rmtree(d, ignore_errors=True)
        out(f"real node {node.name} stopped and its state removed")
    if nodes:
        (nodes[0].state.parent / "kube-proxy.yaml").unlink(missing_ok=True)
    for d in {n.state.parent for n in nodes} | {n.run.parent for n in nodes}:
        with contextlib.suppress(OSError):
            d.rmdir()
    for cluster in {n.state.parent.name for n in nodes}:
        shutil.rmtree(sim_dir(cluster), ignore_errors=True)
    for d in (STATE_ROOT, RUN_ROOT):
        with contextlib.suppress(OSError):
            d.rmdir()
    if not STATE_ROOT.exists():  # no other cluster's kubelet mounts over it
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()
    _record(pids).unlink(missing_ok=True)


def _remove_kubelet_chains() -> None:
    """The kubelet's KUBE-FIREWALL chain (IPv4 and IPv6), which kube-proxy's cleanup leaves."""
    for tool in ("iptables", "ip6tables"):
        for argv in (
            ["-D", "INPUT", "-j", "KUBE-FIREWALL"],
            ["-D", "OUTPUT", "-j", "KUBE-FIREWALL"],
            ["-F", "KUBE-FIREWALL"],
            ["-X", "KUBE-FIREWALL"],
        ):
            subprocess.run([tool, *argv], capture_output=True, check=False)


def _kill_shims(node: RealNode) -> None:
    """Shims of this node's containerd outlive it; they are found by its socket address."""
    address = str(node.containerd_socket).encode()
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address in argv:
                os.kill(int(proc.name), 9)


def _kill_cgroup_processes(node: RealNode) -> None:
    """Kill what still runs in the node's cgroups (containers whose runtime died first)."""
    tops = [h / "megagpu-dev" / node.name for h in _hierarchies()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = {
            int(pid)
            for top in tops
            for procs in (top.rglob("cgroup.procs") if top.is_dir() else ())
            for pid in procs.read_text().split()
        }
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        time.sleep(0.1)


def _remove_cgroups(node: RealNode) -> None:
    """Remove the node's (now empty) cgroups in every hierarchy, leaves first."""
    _kill_cgroup_processes(node)
    for top in (h / "megagpu-dev" for h in _hierarchies()):
        base = top / node.name
        for d in sorted(base.rglob("*"), key=lambda x: len(x.parts), reverse=True):
            if d.is_dir():
                with contextlib.suppress(OSError):
                    d.rmdir()
        with contextlib.suppress(OSError):
            base.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def leftovers(cluster: str) -> list[str]:
    """What ``cluster``'s real nodes could leave and still finds (empty after a clean down).

    Network state is this network namespace's; files and processes are the cluster's own.
    """
    found = []
    if network.bridge_exists():
        found.append(f"bridge {nodeconfig.BRIDGE}")
    mine = (STATE_ROOT / cluster, RUN_ROOT / cluster, Path(sim_dir(cluster)))
    found += [f"directory {d}" for d in mine if d.exists()]
    with open("/proc/self/mounts") as f:
        found += [
            f"mount {line.split()[1]}"
            for line in f
            if any(Path(line.split()[1]).is_relative_to(d) for d in mine)
        ]
    for tool, table in [(t, x) for t in ("iptables", "ip6tables") for x in ("filter", "nat")]:
        rules = subprocess.run(
            [tool, "-t", table, "-S"], capture_output=True, text=True, check=False
        ).stdout
        found += [
            f"{tool} {table}: {rule}"
            for rule in rules.splitlines()
            if nodeconfig.BRIDGE in rule or nodeconfig.gateway() in rule or "KUBE-" in rule
        ]
    ours = tuple(f"{d}/".encode() for d in mine[:2])
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes()
            if any(o in argv for o in ours):
                program = argv.split(b"\0")[0].decode()
                found.append(f"process {proc.name}: {program}")
    return found


def sim_dir(cluster: str) -> str:
    """Where the cluster's probes make the simulated devices (containers see /dev/megagpu-sim)."""
    return "/dev/megagpu-sim" if cluster == "megagpu" else f"/dev/megagpu-sim-{cluster}"
