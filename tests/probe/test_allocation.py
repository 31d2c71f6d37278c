import os
import stat

import pytest

from megagpu.probe import allocation, node, plugin_devices, readings

R = "megagpu.io/gpu"
SIM = [
    plugin_devices.PluginDevice(
        i, f"sim-{i}", "cuda", f"sim-{i}", True, (f"/dev/megagpu-sim/gpu{i}",), True
    )
    for i in range(4)
]


def pod(name, devices="0", backend="cuda", gpus=1, phase="Pending", init=None, sidecar=None, **ann):
    annotations = {"megagpu.io/assigned-devices": devices, "megagpu.io/assigned-backend": backend}
    annotations = {k: v for k, v in annotations.items() if v is not None}
    annotations.update(ann)
    limits = {"resources": {"limits": {R: str(gpus)}}} if gpus else {}
    spec = {"containers": [{"name": "main", **limits}]}
    if init is not None:
        spec["initContainers"] = [{"name": "setup", "resources": {"limits": {R: str(init)}}}]
    if sidecar is not None:
        side = {"name": "side", "restartPolicy": "Always"}
        if sidecar:
            side["resources"] = {"limits": {R: str(sidecar)}}
        spec.setdefault("initContainers", []).append(side)
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "annotations": annotations,
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def kubelet(name, main=(), **others):
    return allocation.KubeletPod("ns", name, {"main": tuple(main), **others})


def make():
    return allocation.Allocator(R, lambda: SIM)


def test_two_pending_pods_each_get_their_own_devices_whatever_the_kubelet_picked():
    a, b = pod("a", "0"), pod("b", "1")
    alloc = make()
    # the kubelet admits b first and offers sim-0: b still gets its own device 1
    got = alloc.allocate(["sim-0"], [kubelet("b")], [a, b])
    assert got.pod == "ns/b" and [d.id for d in got.devices] == ["sim-1"]
    assert got.handover.envs == {"MEGAGPU_BACKEND": "cuda", "MEGAGPU_DEVICES": "1"}
    assert got.handover.paths == ("/dev/megagpu-sim/gpu1",)
    # then a, while b holds sim-0 in the kubelet's books
    got = alloc.allocate(["sim-1"], [kubelet("b", ["sim-0"]), kubelet("a")], [a, b])
    assert got.pod == "ns/a" and [d.id for d in got.devices] == ["sim-0"]
    assert got.handover.envs["MEGAGPU_DEVICES"] == "0"


def test_preferred_allocation_is_the_assigned_devices():
    a, b = pod("a", "2,3", gpus=2), pod("b", "0")
    assert make().preferred(2, [kubelet("a")], [a, b]) == ["sim-2", "sim-3"]
    assert make().preferred(2, [], [a, b]) == []


def test_a_pod_without_annotations_is_refused_clearly():
    bare = pod("bare", devices=None, backend=None)
    with pytest.raises(
        allocation.AllocationError,
        match="ns/bare has no megagpu.io/assigned-devices.*without megagpu's scheduler extender",
    ):
        make().allocate(["sim-0"], [kubelet("bare")], [bare])


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ("0,x", "is not a comma list"),
        ("", "names no device"),
        ("1,1", "names no device or one twice"),
        ("9", "does not have"),
    ],
)
def test_annotations_that_do_not_parse_or_name_unknown_devices_are_refused(devices, message):
    bad = pod("bad", devices, gpus=2 if "," in devices else 1)
    with pytest.raises(allocation.AllocationError, match=message):
        make().allocate(["sim-0", "sim-1"][: 2 if "," in devices else 1], [kubelet("bad")], [bad])


def test_an_unknown_device_id_is_refused():
    with pytest.raises(allocation.AllocationError, match="unknown device id.*GPU-nope"):
        make().allocate(["GPU-nope"], [kubelet("a")], [pod("a")])


def test_ids_that_disagree_with_the_node_are_refused():
    moved = pod("m", "1", **{"megagpu.io/assigned-device-ids": "sim-2"})
    with pytest.raises(allocation.AllocationError, match="devices changed after the pod was bound"):
        make().allocate(["sim-1"], [kubelet("m")], [moved])
    agreeing = pod("m", "1", **{"megagpu.io/assigned-device-ids": "sim-1"})
    assert make().allocate(["sim-1"], [kubelet("m")], [agreeing]).pod == "ns/m"


def test_devices_already_consumed_are_never_double_booked():
    running = pod("run", "0", phase="Running")
    late = pod("late", "0")
    alloc = make()
    with pytest.raises(allocation.AllocationError, match="ns/run holds: refusing to share"):
        alloc.allocate(["sim-1"], [kubelet("run", ["sim-0"]), kubelet("late")], [running, late])
    # a fresh plugin (probe restarted) knows it too: it is derived from the kubelet and the pods
    with pytest.raises(allocation.AllocationError, match="holds"):
        make().allocate(["sim-1"], [kubelet("run", ["sim-0"]), kubelet("late")], [running, late])
    running["status"]["phase"] = "Succeeded"
    assert alloc.allocate(["sim-0"], [kubelet("late")], [running, late]).pod == "ns/late"


def test_what_this_plugin_allocated_counts_before_the_kubelet_records_it():
    alloc = make()
    first, second = pod("first", "0"), pod("second", "0")
    alloc.allocate(["sim-0"], [kubelet("first")], [first, second])
    with pytest.raises(allocation.AllocationError, match="ns/first holds"):
        alloc.allocate(["sim-0"], [kubelet("second")], [first, second])


def test_two_pods_admitting_at_once_are_never_guessed():
    with pytest.raises(allocation.AllocationError, match="refusing to guess"):
        make().allocate(["sim-0"], [kubelet("a"), kubelet("b")], [pod("a", "0"), pod("b", "1")])


def test_no_pod_being_admitted_or_a_count_that_differs_is_refused():
    a = pod("a", "0,1", gpus=2)
    with pytest.raises(
        allocation.AllocationError, match="asking for 1 megagpu.io/gpu \\(admitting: ns/a\\)"
    ):
        make().allocate(["sim-0"], [kubelet("a")], [a])
    odd = pod("odd", "0,1", gpus=1)
    with pytest.raises(
        allocation.AllocationError,
        match="assigned 2 device\\(s\\) \\(0,1\\) but its container asks for 1",
    ):
        make().allocate(["sim-0"], [kubelet("odd")], [odd])


def test_an_init_container_and_the_main_container_get_the_same_devices():
    p = pod("p", "2", init=1)
    alloc = make()
    first = alloc.allocate(["sim-0"], [kubelet("p")], [p])  # the init container
    second = alloc.allocate(["sim-0"], [kubelet("p")], [p])  # main: the kubelet reuses it
    assert [d.id for d in first.devices] == [d.id for d in second.devices] == ["sim-2"]


def test_a_sidecar_without_the_resource_neither_gets_devices_nor_hides_the_pod():
    p = pod("p", "3", sidecar=0)
    got = make().allocate(["sim-1"], [kubelet("p", side=())], [p])
    assert got.pod == "ns/p" and [d.id for d in got.devices] == ["sim-3"]


def test_a_pod_whose_only_requester_is_a_sidecar_is_found_through_it():
    p = pod("p", "1", gpus=0, sidecar=1)
    got = make().allocate(["sim-0"], [kubelet("p", side=())], [p])
    assert [d.id for d in got.devices] == ["sim-1"]
    # once the kubelet recorded the sidecar's device, the pod is no longer being admitted
    with pytest.raises(allocation.AllocationError, match="no pod"):
        make().allocate(["sim-0"], [kubelet("p", side=("sim-1",))], [p])


def test_an_unhealthy_device_is_refused():
    sick = [*SIM[:1], plugin_devices.PluginDevice(1, "sim-1", "cuda", "sim-1", False, (), True)]
    alloc = allocation.Allocator(R, lambda: sick)
    with pytest.raises(allocation.AllocationError, match="unhealthy"):
        alloc.allocate(["sim-0"], [kubelet("a")], [pod("a", "1")])


def test_cuda_hands_over_uuids_device_nodes_and_control_nodes_or_cdi_names():
    gpus = [
        plugin_devices.PluginDevice(0, "GPU-a", "cuda", "GPU-a", True, ("/dev/nvidia0",)),
        plugin_devices.PluginDevice(
            1, "GPU-b", "cuda", "GPU-b", True, ("/dev/nvidia1", "/dev/dri/renderD129")
        ),
    ]
    present = {"/dev/nvidiactl", "/dev/nvidia-uvm"}.__contains__
    h = plugin_devices.handover("cuda", "1", gpus[1:], exists=present)
    assert h.envs == {
        "MEGAGPU_BACKEND": "cuda",
        "MEGAGPU_DEVICES": "1",
        "CUDA_VISIBLE_DEVICES": "GPU-b",
        "NVIDIA_VISIBLE_DEVICES": "GPU-b",
    }
    assert h.paths == ("/dev/nvidia1", "/dev/dri/renderD129", "/dev/nvidiactl", "/dev/nvidia-uvm")
    cdi = plugin_devices.handover("cuda", "0,1", gpus, cdi=True, exists=present)
    assert cdi.cdi == ("nvidia.com/gpu=GPU-a", "nvidia.com/gpu=GPU-b")
    assert cdi.paths == ("/dev/dri/renderD129",)
    vk = plugin_devices.handover("vulkan", "0,1", gpus, exists=present)
    assert vk.envs["GGML_VK_VISIBLE_DEVICES"] == "0,1" and "CUDA_VISIBLE_DEVICES" not in vk.envs


def test_devices_from_a_reading_keep_index_id_health_and_existing_nodes(tmp_path):
    drm = tmp_path / "bus/pci/devices/0000:17:00.0/drm/renderD128"
    drm.mkdir(parents=True)
    reading = node.NodeReading(
        "n",
        [
            readings.Backend(
                "cuda",
                True,
                devices=[
                    readings.Device(
                        0, "H100", uuid="GPU-a", pci_bus_id="00000000:17:00.0", minor=3
                    ),
                    readings.Device(1, "H100", uuid="GPU-b", healthy=False),
                ],
            )
        ],
    )
    found = plugin_devices.from_reading(
        reading, str(tmp_path), exists=lambda p: p != "/dev/nvidia1"
    )
    assert [(d.index, d.id, d.healthy) for d in found] == [(0, "GPU-a", True), (1, "GPU-b", False)]
    assert found[0].paths == ("/dev/nvidia3", "/dev/dri/renderD128") and found[1].paths == ()


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_simulated_devices_are_character_devices_and_a_marker_makes_one_unhealthy(tmp_path):
    sim = plugin_devices.SimulatedDevices(2, "cuda", "h100", 81920, str(tmp_path / "sim"))
    sim.create()
    sim.create()  # idempotent
    assert all(stat.S_ISCHR((tmp_path / "sim" / f"gpu{i}").stat().st_mode) for i in range(2))
    (tmp_path / "sim" / "gpu1.unhealthy").touch()
    backend = sim.reading()
    assert [(d.uuid, d.healthy) for d in backend.devices] == [("sim-0", True), ("sim-1", False)]
    reading = node.NodeReading("n", [backend])
    found = plugin_devices.from_reading(reading, exists=lambda p: True)
    assert [(d.id, d.paths, d.simulated) for d in found] == [
        ("sim-0", ("/dev/megagpu-sim/gpu0",), True),
        ("sim-1", ("/dev/megagpu-sim/gpu1",), True),
    ]


def test_in_vendor_mode_the_nvidia_plugin_keeps_the_gpus_nvml_found():
    nvidia = plugin_devices.PluginDevice(0, "GPU-a", "cuda", "GPU-a")
    amd = plugin_devices.PluginDevice(1, "vk-1", "vulkan")
    assert plugin_devices.offered([nvidia, amd], "megagpu") == [nvidia, amd]
    assert plugin_devices.offered([nvidia, amd], "vendor") == [amd]
    assert plugin_devices.offered(SIM, "vendor") == SIM  # simulated: nobody else offers them
