"""The vulkan backend: SPIR-V compute shaders (tiled GEMM, saxpy) through the ``vulkan`` package.

``vulkan`` raises OSError at import when libvulkan.so.1 is missing, so it is imported inside
``run``; a missing loader, driver, device or shader, and any Vulkan error during the run (a
device lost), make the backend unavailable with the reason. fp32 only.
"""

from __future__ import annotations

import math
import struct
import time
from typing import Any

import numpy as np

from megagpu.workload import kernels, shaders

HINT = "install the vulkan package and the Vulkan loader (libvulkan1) with a driver ICD"
TILE = 64
"""Rows and columns of C per GEMM workgroup (``shaders/gemm.comp``)."""
SAXPY_GROUP = 256
MAX_GROUPS = 65535
CHUNK = 16
"""Dispatches per submission, so no single submission runs for long."""
FENCE_TIMEOUT_NS = 600 * 10**9


class Compute:
    """One Vulkan device with a compute queue; owns every object it creates (``close``)."""

    def __init__(self, vk: Any, index: int) -> None:
        self.vk = vk
        self._destroy: list[tuple[Any, ...]] = []
        app = vk.VkApplicationInfo(
            sType=vk.VK_STRUCTURE_TYPE_APPLICATION_INFO,
            pApplicationName="megagpu-workload",
            applicationVersion=1,
            pEngineName="megagpu",
            engineVersion=1,
            apiVersion=vk.VK_MAKE_VERSION(1, 1, 0),
        )
        self.instance = vk.vkCreateInstance(
            vk.VkInstanceCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo=app
            ),
            None,
        )
        physical = vk.vkEnumeratePhysicalDevices(self.instance)
        if not 0 <= index < len(physical):
            self.close()
            raise kernels.Unavailable(
                f"Vulkan device {index} does not exist ({len(physical)} found)"
            )
        self.physical = physical[index]
        name = vk.vkGetPhysicalDeviceProperties(self.physical).deviceName
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        families = vk.vkGetPhysicalDeviceQueueFamilyProperties(self.physical)
        family = next(
            (i for i, f in enumerate(families) if f.queueFlags & vk.VK_QUEUE_COMPUTE_BIT), None
        )
        if family is None:
            self.close()
            raise kernels.Unavailable(f"Vulkan device {self.name} has no compute queue")
        queue_info = vk.VkDeviceQueueCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
            queueFamilyIndex=family,
            queueCount=1,
            pQueuePriorities=[1.0],
        )
        self.device = vk.vkCreateDevice(
            self.physical,
            vk.VkDeviceCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                queueCreateInfoCount=1,
                pQueueCreateInfos=[queue_info],
            ),
            None,
        )
        self.queue = vk.vkGetDeviceQueue(self.device, family, 0)
        self.pool = vk.vkCreateCommandPool(
            self.device,
            vk.VkCommandPoolCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                flags=vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                queueFamilyIndex=family,
            ),
            None,
        )
        self._destroy.append((vk.vkDestroyCommandPool, self.pool))
        self.cmd = vk.vkAllocateCommandBuffers(
            self.device,
            vk.VkCommandBufferAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                commandPool=self.pool,
                level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                commandBufferCount=1,
            ),
        )[0]
        self.fence = vk.vkCreateFence(
            self.device, vk.VkFenceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO), None
        )
        self._destroy.append((vk.vkDestroyFence, self.fence))

    def close(self) -> None:
        """Destroy every object, the device and the instance."""
        vk = self.vk
        device = getattr(self, "device", None)
        if device is not None:
            vk.vkDeviceWaitIdle(device)
            for destroy, *handle in reversed(self._destroy):
                destroy(device, *handle, None)
            vk.vkDestroyDevice(device, None)
            self.device = None
        self._destroy.clear()
        if getattr(self, "instance", None) is not None:
            vk.vkDestroyInstance(self.instance, None)
            self.instance = None

    def _memory_type(self, bits: int, flags: int) -> int:
        props = self.vk.vkGetPhysicalDeviceMemoryProperties(self.physical)
        for i in range(props.memoryTypeCount):
            if bits & (1 << i) and props.memoryTypes[i].propertyFlags & flags == flags:
                return i
        raise kernels.Unavailable(f"Vulkan device {self.name} has no memory type {flags:#x}")

    def buffer(self, size: int, host: bool = False) -> tuple[Any, Any]:
        """(buffer, memory) of ``size`` bytes: device-local, or host-visible for staging."""
        vk = self.vk
        usage = (
            vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT
            | vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT
            | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT
        )
        buf = vk.vkCreateBuffer(
            self.device,
            vk.VkBufferCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                size=size,
                usage=usage,
                sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE,
            ),
            None,
        )
        self._destroy.append((vk.vkDestroyBuffer, buf))
        need = vk.vkGetBufferMemoryRequirements(self.device, buf)
        flags = (
            vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
            if host
            else vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
        )
        memory = vk.vkAllocateMemory(
            self.device,
            vk.VkMemoryAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                allocationSize=need.size,
                memoryTypeIndex=self._memory_type(need.memoryTypeBits, flags),
            ),
            None,
        )
        self._destroy.append((vk.vkFreeMemory, memory))
        vk.vkBindBufferMemory(self.device, buf, memory, 0)
        return buf, memory

    def _submit(self, record: Any) -> float:
        """Record with ``record(cmd)``, submit, wait; the seconds from submit to completion."""
        vk = self.vk
        vk.vkResetCommandBuffer(self.cmd, 0)
        vk.vkBeginCommandBuffer(
            self.cmd,
            vk.VkCommandBufferBeginInfo(
                sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
            ),
        )
        record(self.cmd)
        vk.vkEndCommandBuffer(self.cmd)
        submit = vk.VkSubmitInfo(
            sType=vk.VK_STRUCTURE_TYPE_SUBMIT_INFO, commandBufferCount=1, pCommandBuffers=[self.cmd]
        )
        start = time.perf_counter()
        vk.vkQueueSubmit(self.queue, 1, [submit], self.fence)
        vk.vkWaitForFences(self.device, 1, [self.fence], vk.VK_TRUE, FENCE_TIMEOUT_NS)
        seconds = time.perf_counter() - start
        vk.vkResetFences(self.device, 1, [self.fence])
        return seconds

    def _copy(self, src: Any, dst: Any, size: int) -> None:
        region = self.vk.VkBufferCopy(srcOffset=0, dstOffset=0, size=size)
        self._submit(lambda cmd: self.vk.vkCmdCopyBuffer(cmd, src, dst, 1, [region]))

    def upload(self, arrays: list[np.ndarray]) -> list[tuple[Any, int]]:
        """(buffer, bytes) of device-local copies of ``arrays`` (through one staging buffer)."""
        vk = self.vk
        size = max(a.nbytes for a in arrays)
        staging, staging_memory = self.buffer(size, host=True)
        out = []
        for array in arrays:
            buf, _ = self.buffer(array.nbytes)
            mapped = vk.vkMapMemory(self.device, staging_memory, 0, array.nbytes, 0)
            mapped[:] = np.ascontiguousarray(array).tobytes()
            vk.vkUnmapMemory(self.device, staging_memory)
            self._copy(staging, buf, array.nbytes)
            out.append((buf, array.nbytes))
        return out

    def download(self, buf: Any, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of ``shape`` read back from ``buf``."""
        vk = self.vk
        size = 4 * math.prod(shape)
        staging, staging_memory = self.buffer(size, host=True)
        self._copy(buf, staging, size)
        mapped = vk.vkMapMemory(self.device, staging_memory, 0, size, 0)
        out = np.frombuffer(bytes(mapped), dtype=np.float32).reshape(shape).copy()
        vk.vkUnmapMemory(self.device, staging_memory)
        return out

    def pipeline(
        self, shader: str, buffers: list[tuple[Any, int]], push_bytes: int
    ) -> tuple[Any, Any, Any]:
        """(pipeline, layout, descriptor set) of ``shader``, ``buffers`` bound in order."""
        vk = self.vk
        code = shaders.load(shader)
        module = vk.vkCreateShaderModule(
            self.device,
            vk.VkShaderModuleCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                codeSize=len(code),
                pCode=code,
            ),
            None,
        )
        self._destroy.append((vk.vkDestroyShaderModule, module))
        bindings = [
            vk.VkDescriptorSetLayoutBinding(
                binding=i,
                descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                descriptorCount=1,
                stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT,
            )
            for i in range(len(buffers))
        ]
        set_layout = vk.vkCreateDescriptorSetLayout(
            self.device,
            vk.VkDescriptorSetLayoutCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                bindingCount=len(bindings),
                pBindings=bindings,
            ),
            None,
        )
        self._destroy.append((vk.vkDestroyDescriptorSetLayout, set_layout))
        layout = vk.vkCreatePipelineLayout(
            self.device,
            vk.VkPipelineLayoutCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                setLayoutCount=1,
                pSetLayouts=[set_layout],
                pushConstantRangeCount=1,
                pPushConstantRanges=[
                    vk.VkPushConstantRange(
                        stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT, offset=0, size=push_bytes
                    )
                ],
            ),
            None,
        )
        self._destroy.append((vk.vkDestroyPipelineLayout, layout))
        stage = vk.VkPipelineShaderStageCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            stage=vk.VK_SHADER_STAGE_COMPUTE_BIT,
            module=module,
            pName="main",
        )
        pipeline = vk.vkCreateComputePipelines(
            self.device,
            vk.VK_NULL_HANDLE,
            1,
            [
                vk.VkComputePipelineCreateInfo(
                    sType=vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
                    stage=stage,
                    layout=layout,
                )
            ],
            None,
        )[0]
        self._destroy.append((vk.vkDestroyPipeline, pipeline))
        pool = vk.vkCreateDescriptorPool(
            self.device,
            vk.VkDescriptorPoolCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                maxSets=1,
                poolSizeCount=1,
                pPoolSizes=[
                    vk.VkDescriptorPoolSize(
                        type=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=len(buffers)
                    )
                ],
            ),
            None,
        )
        self._destroy.append((vk.vkDestroyDescriptorPool, pool))
        descriptor_set = vk.vkAllocateDescriptorSets(
            self.device,
            vk.VkDescriptorSetAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                descriptorPool=pool,
                descriptorSetCount=1,
                pSetLayouts=[set_layout],
            ),
        )[0]
        writes = [
            vk.VkWriteDescriptorSet(
                sType=vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                dstSet=descriptor_set,
                dstBinding=i,
                descriptorCount=1,
                descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                pBufferInfo=[vk.VkDescriptorBufferInfo(buffer=b, offset=0, range=size)],
            )
            for i, (b, size) in enumerate(buffers)
        ]
        vk.vkUpdateDescriptorSets(self.device, len(writes), writes, 0, None)
        return pipeline, layout, descriptor_set

    def dispatch(
        self, bound: tuple[Any, Any, Any], push: bytes, groups: tuple[int, int], passes: int
    ) -> float:
        """Run ``passes`` dispatches, each after the previous one's writes; the seconds taken."""
        vk = self.vk
        pipeline, layout, descriptor_set = bound
        values = vk.ffi.new("char[]", push)
        barrier = vk.VkMemoryBarrier(
            sType=vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            srcAccessMask=vk.VK_ACCESS_SHADER_WRITE_BIT,
            dstAccessMask=vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT,
        )
        stage = vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT

        def record(count: int) -> Any:
            def commands(cmd: Any) -> None:
                vk.vkCmdBindPipeline(cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, pipeline)
                vk.vkCmdBindDescriptorSets(
                    cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, [descriptor_set], 0, None
                )
                vk.vkCmdPushConstants(
                    cmd, layout, vk.VK_SHADER_STAGE_COMPUTE_BIT, 0, len(push), values
                )
                for _ in range(count):
                    vk.vkCmdDispatch(cmd, groups[0], groups[1], 1)
                    vk.vkCmdPipelineBarrier(cmd, stage, stage, 0, 1, [barrier], 0, None, 0, None)

            return commands

        seconds = 0.0
        for start in range(0, passes, CHUNK):
            seconds += self._submit(record(min(CHUNK, passes - start)))
        return seconds


def _gemm(gpu: Compute, n: int, seed: int, passes: int) -> tuple[float, np.ndarray]:
    a, b = kernels.gemm_inputs(n, seed)
    buffers = gpu.upload([a, b, np.zeros((n, n), dtype=np.float32)])
    bound = gpu.pipeline("gemm", buffers, 12)
    groups = (math.ceil(n / TILE), math.ceil(n / TILE))
    seconds = gpu.dispatch(bound, struct.pack("<3I", n, n, n), groups, passes)
    return seconds, gpu.download(buffers[2][0], (n, n))


def _stream(gpu: Compute, n: int, seed: int, passes: int) -> tuple[float, np.ndarray]:
    if n % 4:
        raise kernels.Unavailable(f"the Vulkan stream kernel needs a multiple of 4 floats, got {n}")
    x, y = kernels.stream_inputs(n, seed)
    buffers = gpu.upload([x, y])
    bound = gpu.pipeline("saxpy", buffers, 8)
    groups = math.ceil(n // 4 / SAXPY_GROUP)
    grid = (min(groups, MAX_GROUPS), math.ceil(groups / MAX_GROUPS))
    push = struct.pack("<If", n // 4, kernels.STREAM_ALPHA)
    seconds = gpu.dispatch(bound, push, grid, passes)
    return seconds, gpu.download(buffers[1][0], (n,))


def _work(vk: Any, spec: kernels.Spec, index: int) -> kernels.Result:
    if spec.kernel not in ("gemm", "stream"):
        raise kernels.Unavailable(f"the Vulkan backend runs gemm and stream, not {spec.kernel}")
    if spec.precision != "fp32":
        raise kernels.Unavailable(f"the Vulkan shaders are fp32 only, not {spec.precision}")
    run = _gemm if spec.kernel == "gemm" else _stream
    gpu = Compute(vk, index)
    try:
        n = kernels.CHECK_SIZE[spec.kernel]
        if spec.kernel == "gemm":
            _, got = run(gpu, n, spec.seed, 1)
            want = np.matmul(*(m.astype(np.float64) for m in kernels.gemm_inputs(n, spec.seed)))
        else:
            _, got = run(gpu, n, spec.seed, 2)
            want = kernels.stream_reference(*kernels.stream_inputs(n, spec.seed), passes=2)
        error = kernels.check(spec.kernel, "fp32", kernels.relative_error(got, want))
        passes = spec.passes()
        seconds, _ = run(gpu, spec.side, spec.seed, passes)
        work = passes * kernels.work_per_pass(spec.kernel, spec.side)
        return kernels.Result(work, seconds, error, gpu.name, "fp32")
    finally:
        gpu.close()


def run(spec: kernels.Spec, device: int = 0) -> kernels.Result:
    """Check at a small size against numpy, then do the requested work on Vulkan ``device``."""
    try:
        import vulkan as vk
    except (ImportError, OSError) as e:
        raise kernels.Unavailable(f"Vulkan is not usable: {e}; {HINT}") from e
    try:
        return _work(vk, spec, device)
    except (kernels.Unavailable, kernels.WrongResult):
        raise
    except shaders.ShaderError as e:
        raise kernels.Unavailable(str(e)) from e
    except Exception as e:  # noqa: BLE001 - VkErrorIncompatibleDriver, VkErrorDeviceLost, ...
        raise kernels.Unavailable(f"Vulkan failed: {type(e).__name__} {e}; {HINT}") from e
