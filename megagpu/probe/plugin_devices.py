"""The devices the device plugin offers, and what a container gets for them (DESIGN 9.9).

Device ids are stable: a GPU's UUID, ``sim-<i>`` for a simulated device, else
``<backend>-<index>``. The index is megagpu's (``megagpu.io/assigned-devices``).
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from megagpu.probe import node, readings

NVIDIA_CONTROL = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
"""Device nodes every CUDA container needs beside its ``/dev/nvidia<N>``, where present."""
SIM_DIR = "/dev/megagpu-sim"
SIM_DEVICE = (1, 3)
"""Major and minor of each simulated character device (those of /dev/null: writes vanish)."""
UNHEALTHY_SUFFIX = ".unhealthy"
"""A file ``gpu<i>.unhealthy`` beside a simulated device marks it unhealthy."""


@dataclass(frozen=True)
class PluginDevice:
    """One device as the kubelet sees it."""

    index: int
    id: str
    backend: str
    """The backend that found it (cuda, vulkan, metal)."""
    uuid: str = ""
    healthy: bool = True
    paths: tuple[str, ...] = ()
    """Host device nodes of this device, handed to the container at the same path."""
    simulated: bool = False


@dataclass(frozen=True)
class Handover:
    """What one container gets: environment, device nodes (host = container path), CDI names."""

    envs: dict[str, str] = field(default_factory=dict)
    paths: tuple[str, ...] = ()
    cdi: tuple[str, ...] = ()


def container_path(host_path: str) -> str:
    """Where a device node appears in the container: at its host path.

    Simulated devices always appear at ``/dev/megagpu-sim/gpu<i>``, wherever the node keeps them
    (a dev cluster's real nodes keep them in ``/dev/megagpu-sim-<cluster>``).
    """
    parent, name = os.path.split(host_path)
    return f"{SIM_DIR}/{name}" if os.path.basename(parent).startswith("megagpu-sim") else host_path


def _render_node(pci_bus_id: str, sysfs: str) -> list[str]:
    """``/dev/dri/renderD<M>`` of a PCI device (NVML writes an 8-digit domain, sysfs 4)."""
    if not pci_bus_id:
        return []
    domain, _, rest = pci_bus_id.lower().partition(":")
    address = f"{domain[-4:]}:{rest}" if rest else pci_bus_id.lower()
    found = glob.glob(os.path.join(sysfs, "bus/pci/devices", address, "drm", "renderD*"))
    return [f"/dev/dri/{os.path.basename(p)}" for p in sorted(found)]


def from_reading(
    reading: node.NodeReading,
    sysfs: str = "/sys",
    exists: Callable[[str], bool] = os.path.exists,
    sim_dir: str = SIM_DIR,
) -> list[PluginDevice]:
    """The node's GPUs (each once) with their device nodes, in megagpu index order."""
    out = []
    for entry, (backend, device) in zip(reading.device_list(), reading.gpu_entries(), strict=True):
        if device.uuid.startswith("sim-"):
            paths = [f"{sim_dir}/gpu{device.index}"]
        else:
            paths = _render_node(device.pci_bus_id, sysfs)
            if backend == "cuda":
                minor = device.minor if device.minor is not None else device.index
                paths.insert(0, f"/dev/nvidia{minor}")
        out.append(
            PluginDevice(
                index=entry["index"],
                id=entry["id"],
                backend=backend,
                uuid=device.uuid,
                healthy=device.healthy,
                paths=tuple(p for p in paths if exists(p)),
                simulated=device.uuid.startswith("sim-"),
            )
        )
    return out


def offered(devices: Sequence[PluginDevice], resource_mode: str) -> list[PluginDevice]:
    """The devices megagpu's plugin offers: all but, in resource mode ``vendor``, NVML's.

    There the NVIDIA device plugin advertises the GPUs NVML found as ``nvidia.com/gpu``.
    """
    if resource_mode != "vendor":
        return list(devices)
    return [d for d in devices if d.simulated or d.backend != "cuda"]


def handover(
    backend: str,
    assigned_text: str,
    devices: Sequence[PluginDevice],
    cdi: bool = False,
    exists: Callable[[str], bool] = os.path.exists,
) -> Handover:
    """What a container assigned ``devices`` under ``backend`` gets.

    Always ``MEGAGPU_BACKEND`` and ``MEGAGPU_DEVICES`` (the pod's annotations, as written).
    cuda: ``CUDA_VISIBLE_DEVICES`` and ``NVIDIA_VISIBLE_DEVICES`` by UUID and the device nodes
    with the control and uvm nodes, or CDI names ``nvidia.com/gpu=<uuid>`` where ``cdi``;
    vulkan: the render nodes and ``GGML_VK_VISIBLE_DEVICES`` counted from 0 (only the assigned
    GPUs are visible); simulated devices: their character devices only.
    """
    envs = {"MEGAGPU_BACKEND": backend, "MEGAGPU_DEVICES": assigned_text}
    paths = [p for d in devices for p in d.paths]
    if any(d.simulated for d in devices):
        return Handover(envs, tuple(paths))
    cdi_names: list[str] = []
    nvidia = [d for d in devices if d.backend == "cuda"]
    if backend == "cuda":
        uuids = ",".join(d.uuid or d.id for d in devices)
        envs.update(CUDA_VISIBLE_DEVICES=uuids, NVIDIA_VISIBLE_DEVICES=uuids)
    elif backend == "vulkan":
        envs["GGML_VK_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(devices)))
    if nvidia and cdi:
        cdi_names = [f"nvidia.com/gpu={d.uuid or d.id}" for d in nvidia]
        paths = [p for p in paths if not p.startswith("/dev/nvidia")]
    elif nvidia:
        paths += [p for p in NVIDIA_CONTROL if exists(p)]
    return Handover(envs, tuple(dict.fromkeys(paths)), tuple(cdi_names))


class SimulatedDevices:
    """Character devices ``<dir>/gpu<i>`` standing in for GPUs on a node without any.

    Their product name is the device class, so the node is labelled as the cluster spec says.
    """

    def __init__(
        self, count: int, backend: str, device_class: str, memory_mib: int, path: str = SIM_DIR
    ) -> None:
        if count < 1:
            raise ValueError("the number of simulated devices must be at least 1")
        self.count, self.backend, self.device_class = count, backend, device_class
        self.memory_mib, self.dir = memory_mib, Path(path)

    def create(self) -> None:
        """Make the directory and each missing character device (needs CAP_MKNOD)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            target = self.dir / f"gpu{i}"
            if target.exists() and stat.S_ISCHR(target.stat().st_mode):
                continue
            target.unlink(missing_ok=True)
            os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(*SIM_DEVICE))
            os.chmod(target, 0o666)

    def reading(self) -> readings.Backend:
        """The simulated devices as one backend's reading; a marker file makes one unhealthy."""
        devices = []
        for i in range(self.count):
            sick = (self.dir / f"gpu{i}{UNHEALTHY_SUFFIX}").exists()
            present = (self.dir / f"gpu{i}").exists()
            devices.append(
                readings.Device(
                    index=i,
                    name=self.device_class,
                    uuid=f"sim-{i}",
                    memory_bytes=self.memory_mib * 2**20 or None,
                    healthy=present and not sick,
                    reason="marked unhealthy" if sick else ("" if present else "device missing"),
                )
            )
        return readings.Backend(self.backend, True, driver_version="simulated", devices=devices)
