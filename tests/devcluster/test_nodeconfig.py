import ipaddress
import json
import tomllib
from pathlib import Path

import yaml

from megagpu.devcluster import cluster, images, nodeconfig, realnodes, runtime
from megagpu.devcluster.nodeconfig import RealNode


def node(index: int) -> RealNode:
    return RealNode(
        name=f"megagpu-real-{index}",
        index=index,
        state=Path(f"/var/lib/megagpu-dev/megagpu/megagpu-real-{index}"),
        run=Path(f"/run/megagpu-dev/megagpu/megagpu-real-{index}"),
        kubelet_port=10250 + index,
        healthz_port=10260 + index,
        probe_port=10270 + index,
    )


def test_containerd_runs_runc_on_cgroupfs_without_negative_oom_scores():
    config = tomllib.loads(nodeconfig.containerd_toml(node(0)))
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc["SystemdCgroup"] is False
    assert runc["BinaryName"] == str(nodeconfig.RUNC)
    assert runtime["cni"]["conf_dir"] == str(node(0).cni_conf_dir)
    images_ = config["plugins"]["io.containerd.cri.v1.images"]
    assert images_["pinned_images"]["sandbox"] == images.PAUSE_REF
    assert config["grpc"]["address"] == str(node(0).containerd_socket)


def test_sockets_fit_the_unix_socket_path_limit():
    assert len(str(node(9).containerd_socket)) < 108


def test_each_node_hands_out_its_own_addresses_and_never_masquerades():
    ranges = []
    for i in (0, 1):
        conf = json.loads(nodeconfig.cni_conflist(node(i)))
        bridge = conf["plugins"][0]
        assert bridge["bridge"] == nodeconfig.BRIDGE and bridge["ipMasq"] is False
        r = bridge["ipam"]["ranges"][0][0]
        assert r["gateway"] == nodeconfig.gateway()
        start, end = ipaddress.ip_address(r["rangeStart"]), ipaddress.ip_address(r["rangeEnd"])
        assert start in node(i).pod_range and end in node(i).pod_range
        assert ipaddress.ip_address(nodeconfig.gateway()) not in node(i).pod_range
        ranges.append(node(i).pod_range)
    assert not ranges[0].overlaps(ranges[1])


def test_kubelet_accepts_hybrid_cgroups_and_is_tainted():
    config = yaml.safe_load(nodeconfig.kubelet_yaml(node(1), Path("/ca.crt")))
    assert config["failCgroupV1"] is False and config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == "/megagpu-dev/megagpu-real-1"
    assert config["address"] == nodeconfig.gateway() and config["port"] == 10251
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert {"key": nodeconfig.TAINT, "effect": "NoSchedule"} in config["registerWithTaints"]


def test_kube_proxy_listens_only_here():
    config = yaml.safe_load(nodeconfig.kube_proxy_yaml(Path("/kc"), "n", 1, 2))
    assert config["mode"] == "iptables"
    assert config["healthzBindAddress"].startswith("127.0.0.1:")
    assert config["nodePortAddresses"] == [f"{nodeconfig.gateway()}/32"]


def test_kwok_fakes_only_the_fake_nodes_with_or_without_real_ones():
    p = cluster.Paths(Path("/tmp/w"))
    for real in (False, True):
        config = cluster._kwokctl_config(p, real)
        kwok = next(x for x in config["componentsPatches"] if x["name"] == "kwok-controller")
        args = {a["key"]: a for a in kwok["extraArgs"]}
        assert args["manage-all-nodes"]["value"] == "false" and args["manage-all-nodes"]["override"]
        selector = args["manage-nodes-with-annotation-selector"]
        assert selector["value"] == "kwok.x-k8s.io/node=fake" and not selector["override"]


def test_with_real_nodes_the_control_plane_listens_on_the_gateway_only():
    p = cluster.Paths(Path("/tmp/w"))
    assert cluster._kwokctl_config(p, False)["options"]["bindAddress"] == "127.0.0.1"
    config = cluster._kwokctl_config(p, True)
    assert config["options"]["bindAddress"] == nodeconfig.gateway()
    assert nodeconfig.KUBERNETES_SERVICE_IP in config["options"]["kubeApiserverCertSANs"]
    apiserver = next(x for x in config["componentsPatches"] if x["name"] == "kube-apiserver")
    args = {a["key"]: a["value"] for a in apiserver["extraArgs"]}
    assert args["advertise-address"] == nodeconfig.gateway()
    assert args["service-cluster-ip-range"] == str(nodeconfig.SERVICE_NETWORK)


def test_plan_names_nodes_and_gives_each_its_own_ports_and_state():
    nodes = realnodes.plan("megagpu", 3)
    assert [n.name for n in nodes] == [f"megagpu-real-{i}" for i in range(3)]
    ports = [p for n in nodes for p in (n.kubelet_port, n.healthz_port)]
    assert len(set(ports)) == len(ports)
    assert len({n.state for n in nodes}) == 3


def test_recorded_nodes_round_trip(tmp_path):
    nodes = realnodes.plan("megagpu", 2)
    realnodes._save(tmp_path, nodes)
    assert realnodes.recorded(tmp_path) == nodes
    assert realnodes.recorded(tmp_path / "none") == []


def test_the_simulated_runtime_leaves_real_nodes_pods_to_their_kubelet():
    fake = {"metadata": {"annotations": {"kwok.x-k8s.io/node": "fake"}}}
    assert runtime.is_fake(fake)
    assert not runtime.is_fake({"metadata": {"name": "megagpu-real-0"}})


def test_simulated_devices_appear_at_the_same_path_in_every_cluster():
    from megagpu.probe import plugin_devices

    assert realnodes.sim_dir("megagpu") == "/dev/megagpu-sim"
    other = realnodes.sim_dir("megagpu-e2e")
    assert plugin_devices.container_path(f"{other}/gpu3") == "/dev/megagpu-sim/gpu3"
    assert plugin_devices.container_path("/dev/megagpu-sim/gpu1") == "/dev/megagpu-sim/gpu1"
    assert plugin_devices.container_path("/dev/nvidia0") == "/dev/nvidia0"
