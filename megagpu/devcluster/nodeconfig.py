"""Configuration files of a real node: containerd, CNI, kubelet and kube-proxy (pure renderers).

Every real node of the dev cluster shares this machine's network namespace and one bridge; each
has its own containerd (root, state, socket), its own kubelet (root directory, ports, cgroup root)
and its own slice of the pod network. Sockets live under ``/run`` because a unix socket path is
limited to 108 bytes, which the version-keyed cache directory alone nearly fills.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from megagpu.devcluster import images

BRIDGE = "megagpu0"
POD_NETWORK = ipaddress.IPv4Network("10.244.0.0/16")
"""The bridge's network: the gateway (the node address of every real node) is its first
address; node ``i`` hands its pods addresses from ``10.244.<i+1>.0/24``."""
SERVICE_NETWORK = ipaddress.IPv4Network("10.96.0.0/16")
KUBERNETES_SERVICE_IP = "10.96.0.1"
CNI_PLUGINS = Path("/usr/lib/cni")
"""Debian's containernetworking-plugins (installed by ``make host-packages``)."""
RUNC = Path("/usr/sbin/runc")
KUBELET_DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")
TAINT = "megagpu.io/real-node"
"""Real nodes carry this NoSchedule taint: pods meant for kwok's fake nodes never land on a
real kubelet by accident; pods that should run for real tolerate it."""
LABEL = "megagpu.io/real-node"


def gateway() -> str:
    """The bridge's address: every real node's InternalIP and the API server's listener."""
    return str(POD_NETWORK.network_address + 1)


@dataclass(frozen=True)
class RealNode:
    """Where one real node keeps its state and which ports it listens on."""

    name: str
    index: int
    state: Path
    """Persistent state (containerd root, kubelet root): ``/var/lib/megagpu-dev/<cluster>/<n>``."""
    run: Path
    """Runtime state and sockets: ``/run/megagpu-dev/<cluster>/<n>``."""
    kubelet_port: int
    healthz_port: int
    probe_port: int
    gpus: int = 4
    """Simulated devices the node's probe offers through its device plugin."""
    device_class: str = "sim"

    @property
    def containerd_socket(self) -> Path:
        """Containerd's CRI and API socket."""
        return self.run / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        """Containerd's config.toml."""
        return self.state / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        """The node's CNI configuration directory."""
        return self.state / "cni"

    @property
    def kubelet_dir(self) -> Path:
        """The kubelet's ``--root-dir`` (device plugin sockets live in it)."""
        return self.state / "kubelet"

    @property
    def device_plugin_dir(self) -> Path:
        """Bound at ``/var/lib/kubelet/device-plugins`` in the node's own mount namespace.

        The kubelet looks for device plugins there whatever its ``--root-dir``.
        """
        return self.state / "device-plugins"

    @property
    def kubelet_config(self) -> Path:
        """The KubeletConfiguration file."""
        return self.state / "kubelet.yaml"

    @property
    def pod_range(self) -> ipaddress.IPv4Network:
        """The /24 this node's pods get addresses from."""
        return list(POD_NETWORK.subnets(new_prefix=24))[self.index + 1]


def containerd_toml(node: RealNode) -> str:
    """Containerd 2.x config: runc with cgroupfs, no negative OOM scores, the node's CNI."""
    return f"""version = 3
root = '{node.state / "containerd"}'
state = '{node.run / "containerd"}'

[grpc]
  address = '{node.containerd_socket}'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{images.PAUSE_REF}'

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # Pod network namespaces under the node's state, not the machine's /run/netns.
  netns_mounts_under_state_dir = true
  # The VM grants no CAP_SYS_RESOURCE: a negative oom_score_adj fails every sandbox.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '{RUNC}'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['{CNI_PLUGINS}']
    conf_dir = '{node.cni_conf_dir}'

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
"""


def cni_conflist(node: RealNode) -> str:
    """A bridge network on the dev cluster's bridge; no masquerading (traffic stays here)."""
    pods = node.pod_range
    hosts = list(pods.hosts())
    config = {
        "cniVersion": "1.0.0",
        "name": "megagpu-dev",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node.state / "ipam"),
                    "ranges": [
                        [
                            {
                                "subnet": str(POD_NETWORK),
                                "rangeStart": str(hosts[1]),
                                "rangeEnd": str(hosts[-1]),
                                "gateway": gateway(),
                            }
                        ]
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(config, indent=2)


def kubelet_yaml(node: RealNode, ca_file: Path) -> str:
    """KubeletConfiguration for a node that shares the machine with other kubelets."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Hybrid cgroup v1 here; the default refuses v1 since 1.35.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/megagpu-dev/{node.name}",
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "address": gateway(),
        "port": node.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": node.healthz_port,
        "podLogsDir": str(node.state / "pod-logs"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "failSwapOn": False,
        # Device health reaches allocatable within a probe interval plus this (default 10 s).
        "nodeStatusUpdateFrequency": "2s",
        "registerWithTaints": [{"key": TAINT, "effect": "NoSchedule"}],
        "resolvConf": "/etc/resolv.conf",
        # A shared development disk: evict only when it is nearly full.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "serializeImagePulls": False,
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": False,
        "localStorageCapacityIsolation": False,
    }
    return yaml.safe_dump(config, sort_keys=False)


def kube_proxy_yaml(kubeconfig: Path, hostname: str, healthz_port: int, metrics_port: int) -> str:
    """One kube-proxy for the machine (every real node shares its network namespace)."""
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": str(POD_NETWORK),
        "hostnameOverride": hostname,
        "bindAddress": gateway(),
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # Leave the machine's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0},
        "nodePortAddresses": [f"{gateway()}/32"],
    }
    return yaml.safe_dump(config, sort_keys=False)
