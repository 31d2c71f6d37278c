"""``megagpu dev up | down | status | kubeconfig``: a real control plane on this machine.

kwokctl (binary runtime) runs etcd, kube-apiserver, kube-controller-manager, the stock
kube-scheduler and the kwok controller, all on 127.0.0.1 with RBAC on. ``up`` then installs the
CRDs, PriorityClasses and the default GpuSchedulingPolicy, creates fake GPU nodes from a cluster
spec, and starts the second kube-scheduler (profile ``megagpu-scheduler``) and the megagpu
components as local processes whose logs sit with kwok's (DESIGN section 6).
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from megagpu.core import model
from megagpu.devcluster import (
    binaries,
    components,
    images,
    kubectl,
    network,
    nodeconfig,
    processes,
    realnodes,
    scheduler,
)
from megagpu.devcluster.errors import DevClusterError
from megagpu.io import cluster_spec
from megagpu.io.errors import InputError
from megagpu.kube import convert, names, priorities

DEFAULT_NAME = "megagpu"
NAME_VARIABLE = "MEGAGPU_DEV_CLUSTER"
"""Names another dev cluster (the tests' own); its real nodes, state and logs are its own."""
CRDS = Path(__file__).resolve().parents[2] / "crds"
BOOTSTRAP = Path(__file__).with_name("bootstrap.yaml")
STAGES = Path(__file__).with_name("stages.yaml")
DEFAULT_SPEC = Path(__file__).resolve().parents[2] / "examples" / "clusters" / "dev.yaml"
READY_TIMEOUT_S = 120.0
Output = Callable[[str], None]


@dataclass(frozen=True)
class Paths:
    """Where one dev cluster keeps its files."""

    workdir: Path
    """KWOK_WORKDIR, in the version-keyed cache."""
    name: str = DEFAULT_NAME
    """The cluster's name (kwokctl's, and the prefix of its real nodes)."""

    @property
    def cluster(self) -> Path:
        """Kwokctl's directory of the cluster."""
        return self.workdir / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig written by kwokctl."""
        return self.cluster / "kubeconfig.yaml"

    @property
    def logs(self) -> Path:
        """Logs of every process, kwok's and megagpu's."""
        return self.cluster / "logs"

    @property
    def pids(self) -> Path:
        """Pid files of the processes megagpu started."""
        return self.cluster / "megagpu-pids"

    @property
    def network_record(self) -> Path:
        """What the real nodes' network changed on this machine (outlives the cluster dir)."""
        return self.workdir / f"{self.name}-network.json"

    @property
    def ca_file(self) -> Path:
        """The cluster's CA certificate (kwokctl's pki)."""
        return self.cluster / "pki" / "ca.crt"

    @property
    def scheduler_config(self) -> Path:
        """Configuration of the megagpu-scheduler."""
        return self.cluster / "megagpu-scheduler.yaml"


def paths() -> Paths:
    """Paths of the dev cluster of the pinned version (named by $MEGAGPU_DEV_CLUSTER)."""
    name = os.environ.get(NAME_VARIABLE) or DEFAULT_NAME
    if not re.fullmatch(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?", name):
        raise DevClusterError(
            f"{NAME_VARIABLE}={name!r} is not a cluster name: use up to 32 lowercase letters, "
            "digits and '-', starting with a letter"
        )
    return Paths(binaries.version_dir() / "kwok", name)


def _kwokctl(p: Paths, args: list[str], timeout_s: float = 180.0) -> str:
    env = {**os.environ, "KWOK_WORKDIR": str(p.workdir)}
    try:
        done = subprocess.run(
            [str(binaries.binary("kwokctl")), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise DevClusterError(f"kwokctl {args[0]} did not finish in {timeout_s:.0f}s") from e
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise DevClusterError(
            f"kwokctl {' '.join(args[:2])} failed: {' | '.join(tail)}; logs: {p.logs}"
        )
    return done.stdout


def api_ready(p: Paths) -> bool:
    """Whether the API server answers /readyz with ok."""
    if not p.kubeconfig.exists() or not binaries.binary("kubectl").exists():
        return False
    try:
        done = kubectl.run(p.kubeconfig, ["get", "--raw", "/readyz"], timeout_s=10, check=False)
    except DevClusterError:
        return False
    return done.returncode == 0 and done.stdout.strip() == "ok"


def _healthy(port: int) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/healthz", context=context, timeout=2
        ) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def problems(p: Paths) -> list[str]:
    """What is not up and ready (empty when everything is)."""
    if not p.cluster.exists():
        return ["no dev cluster exists (run `megagpu dev up`)"]
    found = [] if api_ready(p) else ["the API server is not ready"]
    for name, pid in processes.pids(p.pids).items():
        if not processes.alive(pid):
            found.append(f"{name} (pid {pid}) is not running; see {p.logs / (name + '.log')}")
    nodes = realnodes.recorded(p.pids)
    if nodes and not found:
        found += [
            line
            for line in realnodes.status(nodes, p.kubeconfig, p.pids)
            if not line.endswith(": Ready")
        ]
    return found


def real_node_sockets() -> list[Path]:
    """The containerd sockets of the running dev cluster's real nodes ([] when none run)."""
    return [n.containerd_socket for n in realnodes.recorded(paths().pids)]


def real_node_lines(p: Paths) -> list[str]:
    """One status line per real node of the running cluster."""
    return realnodes.status(realnodes.recorded(p.pids), p.kubeconfig, p.pids)


def up(
    spec: Path = DEFAULT_SPEC,
    extender: scheduler.ExtenderOptions | None = None,
    *,
    components: bool = True,
    apiserver_port: int = 0,
    time_scale: float = 1 / 3600,
    real_nodes: int = 0,
    out: Output = print,
) -> None:
    """Bring the cluster up (a no-op when it already is); leaves no half-started processes.

    ``real_nodes`` kubelets with containerd run beside the fake nodes, each given the pause and
    kube-scheduler images and ``localhost/megagpu:dev`` when ``make image`` has built it.
    """
    if real_nodes < 0:
        raise DevClusterError(f"--real-nodes must be 0 or more, not {real_nodes}")
    if real_nodes:
        realnodes.preflight()
    p = paths()
    try:
        nodes = cluster_spec.load(spec)
    except InputError as e:
        raise DevClusterError(f"the cluster spec is malformed: {e}") from e
    if p.cluster.exists() and not problems(p):
        running = len(realnodes.recorded(p.pids))
        if real_nodes and running != real_nodes:
            raise DevClusterError(
                f"the dev cluster is up with {running} real node(s), not {real_nodes}: "
                "stop it first (megagpu dev down)"
            )
        out(f"the dev cluster is already up; kubeconfig: {p.kubeconfig}")
        return
    if p.cluster.exists() and api_ready(p) and _restart_dead(p, out):
        return
    if p.cluster.exists():
        out("found a stale dev cluster from an earlier run; removing it first")
        down(out=lambda _: None)
    if apiserver_port and processes.port_in_use(apiserver_port):
        raise DevClusterError(
            f"port {apiserver_port} on 127.0.0.1 is already in use: stop what listens there "
            f"(`ss -ltnp | grep :{apiserver_port}`) or pass another --apiserver-port"
        )
    spent = binaries.ensure(out)
    if spent:
        out(f"cold build finished in {spent:.0f}s; binaries in {binaries.bin_dir()}")
    start = time.monotonic()
    try:
        if real_nodes:
            network.up(p.network_record)
        _create(p, apiserver_port, out, real=bool(real_nodes))
        _bootstrap(p, nodes, out)
        if real_nodes:
            out(f"starting {real_nodes} real node(s): containerd, kubelet, kube-proxy")
            real = realnodes.plan(p.name, real_nodes)
            archives = images.for_new_nodes(out)
            realnodes.start(
                real, p.kubeconfig, p.ca_file, p.logs, p.pids, archives, out, probes=components
            )
        if components:  # the megagpu-scheduler and megagpu's own processes
            _start_scheduler(p, extender or scheduler.ExtenderOptions(), out)
            _wait(p)
            _start_components(p, out, time_scale, spec)
    except BaseException:
        kept = _keep_logs(p)
        try:
            down(out=lambda _: None)
        except Exception as e:  # noqa: BLE001 - the start's own error is the one to raise
            out(f"cleaning up the failed start also failed: {e}")
        out(f"the logs of the failed start are kept in {kept}")
        raise
    out(
        f"dev cluster ready in {time.monotonic() - start:.1f}s: {len(nodes)} fake nodes, "
        f"{real_nodes} real; logs in {p.logs}"
    )
    out(f"kubeconfig: {p.kubeconfig}")


def _keep_logs(p: Paths) -> Path:
    """Copy the logs out of the cluster directory, which ``down`` deletes."""
    kept = p.workdir / f"{p.name}-failed-start-logs"
    shutil.rmtree(kept, ignore_errors=True)
    if p.logs.is_dir():
        shutil.copytree(p.logs, kept)
    return kept


def _kwokctl_config(p: Paths, real: bool) -> dict[str, object]:
    """Kwokctl's configuration: kwok fakes only the annotated fake nodes.

    A real kubelet owns its node. With real nodes, every control-plane listener moves from
    127.0.0.1 to the pod bridge's gateway (pods cannot reach this machine's loopback), the API
    server advertises it as the ``kubernetes`` Service's endpoint, and admission (ServiceAccount
    tokens) is on.

    A patch that overrides replaces an argument kwokctl writes; one that does not appends.
    """
    patches: list[dict[str, object]] = [
        _patch(
            "kwok-controller",
            {"manage-all-nodes": "false"},
            {"manage-nodes-with-annotation-selector": f"{names.ANN_KWOK_NODE}=fake"},
        )
    ]
    options: dict[str, object] = {
        "bindAddress": "127.0.0.1",
        "kubectlBinary": str(binaries.binary("kubectl")),
    }
    if real:
        gateway = nodeconfig.gateway()
        options.update(
            bindAddress=gateway,
            kubeAdmission=True,
            kubeApiserverCertSANs=[
                nodeconfig.KUBERNETES_SERVICE_IP,
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )
        service_range = {"service-cluster-ip-range": str(nodeconfig.SERVICE_NETWORK)}
        patches += [
            _patch(
                "kube-apiserver",
                {},
                {
                    "advertise-address": gateway,
                    "endpoint-reconciler-type": "lease",
                    # `kubectl logs` and `exec`: reach kubelets by address, as the admin.
                    "kubelet-preferred-address-types": "InternalIP",
                    "kubelet-client-certificate": str(p.cluster / "pki" / "admin.crt"),
                    "kubelet-client-key": str(p.cluster / "pki" / "admin.key"),
                }
                | service_range,
            ),
            _patch("kube-controller-manager", {}, service_range),
        ]
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": options,
        "componentsPatches": patches,
    }


def _patch(component: str, replace: dict[str, str], add: dict[str, str]) -> dict[str, object]:
    extra = [{"key": k, "value": v, "override": True} for k, v in replace.items()]
    extra += [{"key": k, "value": v, "override": False} for k, v in add.items()]
    return {"name": component, "extraArgs": extra}


def _create(p: Paths, apiserver_port: int, out: Output, *, real: bool) -> None:
    out("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok")
    p.workdir.mkdir(parents=True, exist_ok=True)
    config = p.workdir / "kwokctl.yaml"
    etcd_port = processes.free_port()
    if real:
        apiserver_port = apiserver_port or processes.free_port()
        network.forward_loopback(p.network_record, [etcd_port, apiserver_port])
    header = _kwokctl_config(p, real)
    config.write_text(yaml.safe_dump(header) + "---\n" + STAGES.read_text())
    b = binaries.binary
    args = [
        "-c",
        str(config),
        "create",
        "cluster",
        "--name",
        p.name,
        "--runtime",
        "binary",
        "--etcd-binary",
        str(b("etcd")),
        "--kube-apiserver-binary",
        str(b("kube-apiserver")),
        "--kube-controller-manager-binary",
        str(b("kube-controller-manager")),
        "--kube-scheduler-binary",
        str(b("kube-scheduler")),
        "--kwok-controller-binary",
        str(b("kwok")),
        "--kube-authorization",
        "--kubeconfig=",
        "--timeout",
        "3m",
    ]
    args += ["--etcd-port", str(etcd_port)]
    if apiserver_port:
        args += ["--kube-apiserver-port", str(apiserver_port)]
    _kwokctl(p, args)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not api_ready(p):
        if time.monotonic() > deadline:
            raise DevClusterError(
                f"the API server was not ready in {READY_TIMEOUT_S:.0f}s; "
                f"see {p.logs / 'kube-apiserver.log'}"
            )
        time.sleep(0.5)


def _bootstrap(p: Paths, nodes: list[model.Node], out: Output) -> None:
    out(f"installing CRDs, PriorityClasses, the default policy and {len(nodes)} fake nodes")
    if not CRDS.is_dir():
        raise DevClusterError(f"CRD directory {CRDS} is missing: run from a megagpu checkout")
    kubectl.run(p.kubeconfig, ["apply", "--server-side", "--force-conflicts", "-f", str(CRDS)])
    kubectl.run(
        p.kubeconfig,
        [
            "wait",
            "--for",
            "condition=Established",
            "--timeout",
            "60s",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=megagpu",
        ],
    )
    kubectl.run(p.kubeconfig, ["apply", "--server-side", "-f", str(BOOTSTRAP)])
    manifests = [*priorities.manifests(), *(convert.fake_node(n) for n in nodes)]
    kubectl.run(
        p.kubeconfig, ["apply", "--server-side", "-f", "-"], stdin=yaml.safe_dump_all(manifests)
    )


def _start_scheduler(p: Paths, extender: scheduler.ExtenderOptions, out: Output) -> None:
    port = processes.free_port()
    config = scheduler.write(p.scheduler_config, scheduler.config(p.kubeconfig, extender))
    argv = scheduler.argv(
        binaries.binary("kube-scheduler"), config, port, extender.max_unschedulable_s
    )
    processes.start(names.SCHEDULER_NAME, argv, p.logs, p.pids)
    (p.pids / f"{names.SCHEDULER_NAME}.port").write_text(str(port))
    out(
        f"started {names.SCHEDULER_NAME} (extender {extender.url}, "
        f"ignorable={extender.ignorable}, timeout {extender.timeout_s:g}s)"
    )


def _restart_dead(p: Paths, out: Output) -> bool:
    """Restart megagpu processes that died while the control plane stayed up."""
    dead = [n for n, pid in processes.pids(p.pids).items() if not processes.alive(pid)]
    if any(name.startswith("containerd-") for name in dead):
        return False  # its kubelet entered the old mount namespace: the node is started anew
    for name in dead:
        try:
            processes.restart(name, p.logs, p.pids)
        except (OSError, ValueError):
            return False
        out(f"restarted {name} (it had stopped); log {p.logs / (name + '.log')}")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while problems(p) and time.monotonic() < deadline:
        time.sleep(0.3)
    return not problems(p)


def _start_components(p: Paths, out: Output, time_scale: float, spec: Path) -> None:
    started = [
        components.extender(p.kubeconfig),
        components.operator(p.kubeconfig),
        components.runtime(p.kubeconfig, time_scale),
        components.probe(p.kubeconfig, spec.resolve()),
    ]
    for component in started:
        components.start(component, p.logs, p.pids)
    for component in started:
        components.wait_ready(component, p.logs, processes.pids(p.pids)[component.name])
        out(f"started {component.name} (ready; log {p.logs / (component.name + '.log')})")


def _wait(p: Paths) -> None:
    port_file = p.pids / f"{names.SCHEDULER_NAME}.port"
    port = int(port_file.read_text())
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not _healthy(port):
        pid = processes.pids(p.pids).get(names.SCHEDULER_NAME, 0)
        if not processes.alive(pid) or time.monotonic() > deadline:
            raise DevClusterError(
                f"{names.SCHEDULER_NAME} did not become healthy; see "
                f"{p.logs / (names.SCHEDULER_NAME + '.log')}"
            )
        time.sleep(0.3)


def down(out: Output = print) -> None:
    """Stop every process ``up`` started and delete the cluster."""
    p = paths()
    had_real_nodes = bool(realnodes.recorded(p.pids)) or p.network_record.exists()
    realnodes.stop(p.pids, out)
    stopped = processes.stop_all(p.pids)
    if p.cluster.exists():
        if binaries.binary("kwokctl").exists():
            _kwokctl(p, ["delete", "cluster", "--name", p.name])
        out(f"dev cluster deleted (stopped {', '.join(stopped) or 'no megagpu processes'})")
    else:
        out("no dev cluster to delete")
    undone = network.down(p.network_record)
    if undone:
        out(f"network restored: {', '.join(undone)}")
    left = realnodes.leftovers(p.name) if had_real_nodes else []
    if left:
        out(f"warning: still on this machine after down: {'; '.join(left)}")


def kubeconfig() -> Path:
    """The kubeconfig path; raises when no cluster exists."""
    p = paths()
    if not p.kubeconfig.exists():
        raise DevClusterError("no dev cluster exists: run `megagpu dev up` first")
    return p.kubeconfig
