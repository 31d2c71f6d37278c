"""One probe of the node: every backend, each device counted once."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from megagpu.probe import readings, vulkan


class Source(Protocol):
    """A backend that can be read."""

    name: str

    def read(self) -> readings.Backend:
        """One reading."""
        ...


@dataclass
class NodeReading:
    """Every backend of one node, and the devices counted once across them."""

    hostname: str
    backends: list[readings.Backend] = field(default_factory=list)

    def backend(self, name: str) -> readings.Backend | None:
        """The reading of one backend."""
        return next((b for b in self.backends if b.name == name), None)

    def gpus(self) -> list[readings.Device]:
        """Distinct GPUs: NVML's, then Vulkan and Metal GPUs not already seen; never CPUs."""
        return [device for _, device in self.gpu_entries()]

    def gpu_entries(self) -> list[tuple[str, readings.Device]]:
        """(backend, device) of each distinct GPU, in ``gpus`` order.

        The position is the device's megagpu index (annotations, GpuNode ``status.devices``,
        device plugin).
        """
        cuda = self.backend("cuda")
        found = [("cuda", d) for d in cuda.devices] if cuda and cuda.available else []
        for name in ("vulkan", "metal"):
            other = self.backend(name)
            for device in other.devices if other and other.available else []:
                if device.kind in ("gpu", "integrated") and not any(
                    vulkan.same_device(device, seen) for _, seen in found
                ):
                    found.append((name, device))
        return found

    def device_list(self) -> list[dict[str, Any]]:
        """The GPUs as megagpu names them (GpuNode ``status.devices``, the device plugin).

        The id is stable (DESIGN 9.9): the UUID (``sim-<i>`` for a simulated device), else
        ``<backend>-<index>``.
        """
        return [
            {
                "index": index,
                "id": device.uuid or f"{backend}-{index}",
                "uuid": device.uuid,
                "backend": backend,
                "healthy": device.healthy,
            }
            for index, (backend, device) in enumerate(self.gpu_entries())
        ]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "hostname": self.hostname,
            "backends": {b.name: b.to_json() for b in self.backends},
            "gpus": len(self.gpus()),
        }


def read(sources: Sequence[Source], hostname: str | None = None) -> NodeReading:
    """Read every source; a source that raises is reported unavailable, never fatal."""
    node = NodeReading(hostname or socket.gethostname())
    for source in sources:
        try:
            node.backends.append(source.read())
        except Exception as e:  # noqa: BLE001 - one broken backend must not stop the others
            node.backends.append(readings.Backend(source.name, False, f"probe failed: {e}"))
    return node
