"""Which environment variables make each runtime use exactly the devices assigned to a pod.

The assignment comes as ``MEGAGPU_BACKEND`` and ``MEGAGPU_DEVICES``, which the operator fills
from the pod's ``megagpu.io/assigned-backend`` and ``megagpu.io/assigned-devices`` annotations
(DESIGN 9.2): a backend and a comma list of device indices, ``0,1``, or empty for none. The
indices are the probe's, on the node: NVML's for cuda (PCI bus order) and
``vkEnumeratePhysicalDevices`` order for vulkan. Device ids (``megagpu.io/assigned-device-ids``)
do not reach the environment, so the variables below name devices by index.

Pure: the environment comes in as a mapping and the variables to set go out as a dict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from megagpu.core import model

BACKEND_VAR = "MEGAGPU_BACKEND"
DEVICES_VAR = "MEGAGPU_DEVICES"
MAX_INDEX = 2**31 - 1
"""Largest device index accepted (runtimes keep device ordinals in a C int)."""

_INDEX = re.compile(r"[0-9]{1,10}")
_NOT_A_LIST = ("", "all", "none", "void")
"""NVIDIA_VISIBLE_DEVICES values that do not narrow the container to a device list."""
_HINT = (
    f"megagpu exec runs inside a pod placed by megagpu, whose {BACKEND_VAR} and {DEVICES_VAR} "
    "come from its megagpu.io/assigned-backend and megagpu.io/assigned-devices annotations; "
    f"elsewhere set both yourself, for example {BACKEND_VAR}=cuda {DEVICES_VAR}=0,1"
)


class AssignmentError(ValueError):
    """The assignment variables are missing or malformed; the message says which and what to do."""


@dataclass(frozen=True)
class Assignment:
    """The devices a pod may use."""

    backend: str
    """One of ``model.BACKENDS``."""
    devices: tuple[int, ...]
    """Device indices on the node, distinct, in the order assigned (empty: no device)."""


def parse_assignment(env: Mapping[str, str]) -> Assignment:
    """The assignment in ``env``; AssignmentError when a variable is missing or malformed."""
    backend = env.get(BACKEND_VAR)
    if backend is None:
        raise AssignmentError(f"{BACKEND_VAR} is not set: {_HINT}")
    backend = backend.strip()
    if not backend:
        raise AssignmentError(
            f"{BACKEND_VAR} is empty: the pod has no megagpu.io/assigned-backend annotation, so "
            "it was bound without megagpu's scheduler extender (was the extender down?) and no "
            "devices were assigned to it; run the workload again once the extender is up, or "
            f"set {BACKEND_VAR} and {DEVICES_VAR} yourself"
        )
    if backend not in model.BACKENDS:
        raise AssignmentError(
            f"{BACKEND_VAR}={backend!r} is not a backend megagpu knows; use one of "
            f"{', '.join(model.BACKENDS)}"
        )
    text = env.get(DEVICES_VAR)
    if text is None:
        raise AssignmentError(f"{DEVICES_VAR} is not set (empty means no device): {_HINT}")
    return Assignment(backend, _indices(text))


def _indices(text: str) -> tuple[int, ...]:
    """``"0,1"`` -> (0, 1); blank -> (); AssignmentError naming the bad item otherwise."""
    if not text.strip():
        return ()
    devices: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        problem = ""
        if not _INDEX.fullmatch(item):
            problem = f"{item!r} is not a device index" if item else "it has an empty item"
        elif int(item) > MAX_INDEX:
            problem = f"{item} is larger than any device index ({MAX_INDEX})"
        elif int(item) in devices:
            problem = f"it names device {int(item)} twice"
        if problem:
            raise AssignmentError(
                f"{DEVICES_VAR}={text!r} is not a comma list of distinct device indices "
                f"(for example 0,1): {problem}"
            )
        devices.append(int(item))
    return tuple(devices)


def runtime_variables(assignment: Assignment, env: Mapping[str, str]) -> dict[str, str]:
    """The variables to set (replacing any already set) so runtimes use only the assignment.

    - cuda: ``CUDA_VISIBLE_DEVICES`` with the indices and ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so
      CUDA numbers devices as NVML (and the probe) does rather than fastest first. When
      ``NVIDIA_VISIBLE_DEVICES`` in ``env`` lists devices (vendor mode: the NVIDIA device plugin
      chose them), the NVIDIA container runtime has already narrowed the container to those,
      numbered from 0, so node indices do not apply: the list becomes ``0..n-1``, and a list
      whose length differs from the assignment's is an AssignmentError.
    - vulkan: ``GGML_VK_VISIBLE_DEVICES`` (llama.cpp and other ggml programs) with the indices.
      ``MESA_VK_DEVICE_SELECT`` is never set, as it cannot be derived: it names a device by PCI
      ``vendor:device`` id, which the assignment does not carry and which two cards of one model
      share, and the device it selects moves to the front of the enumeration, which would shift
      the indices ``GGML_VK_VISIBLE_DEVICES`` refers to.
    - metal: nothing. No Metal runtime reads a device-selection variable; a process uses the
      system default GPU (on Apple silicon, the only one). More than one device is an
      AssignmentError, as workloads of more than one GPU cannot accept metal.
    - cpu: nothing; any devices listed are ignored.

    An empty device list hides every device of a GPU backend (the variable is set, empty).
    """
    listed = ",".join(str(d) for d in assignment.devices)
    if assignment.backend == "cuda":
        return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": _cuda(assignment, env)}
    if assignment.backend == "vulkan":
        return {"GGML_VK_VISIBLE_DEVICES": listed}
    if assignment.backend == "metal" and len(assignment.devices) > 1:
        raise AssignmentError(
            f"{DEVICES_VAR}={listed!r} assigns {len(assignment.devices)} devices to metal, "
            "which runs a workload on one GPU only"
        )
    return {}


def _cuda(assignment: Assignment, env: Mapping[str, str]) -> str:
    """CUDA_VISIBLE_DEVICES: node indices, or 0..n-1 inside a runtime-narrowed container."""
    given = env.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    if given.lower() in _NOT_A_LIST:
        return ",".join(str(d) for d in assignment.devices)
    visible = [part for part in given.split(",") if part.strip()]
    if len(visible) != len(assignment.devices):
        raise AssignmentError(
            f"NVIDIA_VISIBLE_DEVICES={given!r} gives this container {len(visible)} GPU(s) but "
            f"{DEVICES_VAR} assigns {len(assignment.devices)}: the pod's nvidia.com/gpu request "
            "and its megagpu assignment disagree; check the pod's resources and annotations"
        )
    return ",".join(str(i) for i in range(len(visible)))
