"""The vulkan backend: physical devices, their types, API versions and device-local memory.

The ``vulkan`` package raises OSError at import when libvulkan.so.1 is missing, so it is
imported lazily here and both ImportError and OSError make the backend unavailable.
"""

from __future__ import annotations

import time
from typing import Any

from megagpu.probe import readings

HINT = "install the vulkan package and the Vulkan loader (libvulkan1) with a driver ICD"
TYPES = {0: "other", 1: "integrated", 2: "gpu", 3: "virtual", 4: "cpu"}


def _version(v: int) -> str:
    return f"{v >> 22}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"


def _uuid(raw: Any) -> str:
    hexes = "".join(f"{int(b) & 0xFF:02x}" for b in list(raw)[:16])
    if len(hexes) != 32 or not int(hexes, 16):
        return ""
    return f"GPU-{hexes[:8]}-{hexes[8:12]}-{hexes[12:16]}-{hexes[16:20]}-{hexes[20:]}"


class Vulkan:
    """Enumerates Vulkan physical devices through a short-lived instance."""

    name = "vulkan"

    def read(self) -> readings.Backend:
        """One reading; unavailable with a reason when there is no loader or driver."""
        start = time.perf_counter()
        try:
            import vulkan as vk
        except (ImportError, OSError) as e:
            return readings.Backend(self.name, False, f"Vulkan is not usable: {e}; {HINT}")
        try:
            app = vk.VkApplicationInfo(
                sType=vk.VK_STRUCTURE_TYPE_APPLICATION_INFO,
                pApplicationName="megagpu",
                applicationVersion=1,
                pEngineName="megagpu",
                engineVersion=1,
                apiVersion=vk.VK_MAKE_VERSION(1, 1, 0),
            )
            instance = vk.vkCreateInstance(
                vk.VkInstanceCreateInfo(
                    sType=vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo=app
                ),
                None,
            )
        except Exception as e:  # noqa: BLE001 - VkErrorIncompatibleDriver and friends
            return readings.Backend(self.name, False, f"no Vulkan driver: {e!r}; {HINT}")
        try:
            physical = vk.vkEnumeratePhysicalDevices(instance)
            devices = [self._device(vk, instance, pd, i) for i, pd in enumerate(physical)]
            api = max((d.compute_capability for d in devices), default="")
        finally:
            vk.vkDestroyInstance(instance, None)
        backend = readings.Backend(
            self.name,
            bool(devices),
            api_version=api,
            devices=devices,
            read_seconds=time.perf_counter() - start,
        )
        if not devices:
            backend.reason = "the Vulkan loader found no physical device"
        return backend

    def _device(self, vk: Any, instance: Any, pd: Any, index: int) -> readings.Device:
        props = vk.vkGetPhysicalDeviceProperties(pd)
        memory = vk.vkGetPhysicalDeviceMemoryProperties(pd)
        local = [
            memory.memoryHeaps[i]
            for i in range(memory.memoryHeapCount)
            if memory.memoryHeaps[i].flags & vk.VK_MEMORY_HEAP_DEVICE_LOCAL_BIT
        ]
        uuid = ""
        try:
            ids = vk.VkPhysicalDeviceIDProperties(
                sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES
            )
            both = vk.VkPhysicalDeviceProperties2(
                sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, pNext=ids
            )
            get = vk.vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceProperties2")
            get(pd, both)
            uuid = _uuid(ids.deviceUUID)
        except Exception:  # noqa: BLE001 - older loaders: fall back to matching by name
            uuid = ""
        name = props.deviceName
        name = name.decode() if isinstance(name, bytes) else str(name)
        return readings.Device(
            index=index,
            name=name,
            uuid=uuid,
            memory_bytes=max((h.size for h in local), default=None),
            compute_capability=_version(props.apiVersion),
            kind=TYPES.get(props.deviceType, "other"),
        )


def same_device(vk_device: readings.Device, nvml_device: readings.Device) -> bool:
    """Whether a Vulkan device and an NVML device are one GPU (UUID, else exact name)."""
    if vk_device.uuid and nvml_device.uuid:
        return vk_device.uuid.lower() == nvml_device.uuid.lower()
    return bool(vk_device.name) and vk_device.name == nvml_device.name
