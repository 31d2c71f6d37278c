"""The cuda backend: NVML (nvidia-ml-py) inventory and live values, cupy benchmarks.

NVML is imported in this one guarded place and never at import or registration time; a missing
library or driver makes the backend unavailable with a reason. A field a device does not support
(NVMLError_NotSupported) reads as None, never 0 and never an exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from megagpu.probe import readings, schedule, xid

HINT = "install nvidia-ml-py and run where the NVIDIA driver is visible (libnvidia-ml.so.1)"


def load_nvml() -> Any:
    """The pynvml module, or raise ImportError with a hint."""
    try:
        import pynvml
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"nvidia-ml-py is not installed: {HINT}") from e
    return pynvml


def _na(call: Callable[[], Any], nvml: Any) -> Any:
    try:
        return call()
    except nvml.NVMLError_NotSupported:
        return None
    except nvml.NVMLError as e:  # FunctionNotFound, NoPermission, ...: unknown, not fatal
        if isinstance(e, nvml.NVMLError_GpuIsLost):
            raise
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Cuda:
    """Reads every NVIDIA device of the node with one NVML handle per device."""

    name = "cuda"

    def __init__(self, nvml: Any | None = None, watch_xid: bool = True) -> None:
        self._nvml = nvml
        self._initialized = False
        self._watch_xid = watch_xid
        self.xid: xid.XidWatcher | None = None
        """The XID event thread, started by the first successful read."""

    def _init(self) -> Any:
        nvml = self._nvml or load_nvml()
        if not self._initialized:
            nvml.nvmlInit()
            self._initialized = True
        self._nvml = nvml
        return nvml

    def read(self) -> readings.Backend:
        """One reading of every device; unavailable with a reason when NVML cannot start."""
        start = time.perf_counter()
        try:
            nvml = self._init()
            count = nvml.nvmlDeviceGetCount()
            driver = _text(nvml.nvmlSystemGetDriverVersion())
        except ImportError as e:
            return readings.Backend(self.name, False, str(e))
        except Exception as e:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self._initialized = False
            return readings.Backend(self.name, False, f"NVML failed to start: {e}; {HINT}")
        if self._watch_xid and self.xid is None:
            self._start_xid(nvml, count)
        devices = [self._device(nvml, i) for i in range(count)]
        return readings.Backend(
            self.name,
            True,
            driver_version=driver,
            devices=devices,
            read_seconds=time.perf_counter() - start,
        )

    def _start_xid(self, nvml: Any, count: int) -> None:
        self.xid = xid.XidWatcher(nvml)
        try:
            handles = {}
            for i in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                handles[_text(nvml.nvmlDeviceGetUUID(handle))] = handle
        except nvml.NVMLError as e:
            self.xid.error = f"XID events unavailable: {e}"
            return
        self.xid.start(handles)

    def _xid_of(self, uuid: str) -> tuple[int | None, int | None]:
        """(last XID or None when not watched, a hardware-failure XID to report now)."""
        if self.xid is None or not self.xid.running:
            return None, None
        return self.xid.last.get(uuid, 0), self.xid.fatal.pop(uuid, None)

    def _device(self, nvml: Any, index: int) -> readings.Device:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(nvml.nvmlDeviceGetName(handle))
            memory = _na(lambda: nvml.nvmlDeviceGetMemoryInfo(handle), nvml)
            util = _na(lambda: nvml.nvmlDeviceGetUtilizationRates(handle), nvml)
            major_minor = _na(lambda: nvml.nvmlDeviceGetCudaComputeCapability(handle), nvml)
            power = _na(lambda: nvml.nvmlDeviceGetPowerUsage(handle), nvml)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            last_xid, fatal_xid = self._xid_of(uuid)
            return readings.Device(
                index=index,
                name=name,
                uuid=uuid,
                pci_bus_id=_text(nvml.nvmlDeviceGetPciInfo(handle).busId),
                minor=_na(lambda: nvml.nvmlDeviceGetMinorNumber(handle), nvml),
                memory_bytes=memory.total if memory else None,
                used_bytes=memory.used if memory else None,
                utilization=util.gpu / 100 if util else None,
                memory_copy_utilization=util.memory / 100 if util else None,
                temperature_c=_na(
                    lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU), nvml
                ),
                power_w=power / 1000 if power is not None else None,
                sm_clock_mhz=_na(
                    lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM), nvml
                ),
                mem_clock_mhz=_na(
                    lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM), nvml
                ),
                energy_mj=_na(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle), nvml),
                xid=last_xid,
                ecc_uncorrected=_na(
                    lambda: nvml.nvmlDeviceGetTotalEccErrors(
                        handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
                    ),
                    nvml,
                ),
                compute_capability=f"{major_minor[0]}.{major_minor[1]}" if major_minor else "",
                fp64=bool(major_minor and major_minor[0] >= 6 and major_minor[1] == 0),
                fp16=bool(major_minor and major_minor[0] >= 6),
                healthy=fatal_xid is None,
                reason=""
                if fatal_xid is None
                else f"XID {fatal_xid}: the device reported a hardware failure",
            )
        except Exception as e:  # noqa: BLE001 - a lost device is reported, not raised
            return readings.Device(
                index=index, name="unknown", healthy=False, reason=f"device read failed: {e}"
            )


def benchmark(index: int = 0, seconds_budget: float = 2.0) -> readings.Benchmarks:
    """fp32/fp16 GEMM TFLOPS and device copy GB/s with cupy (the ``gpu`` extra).

    The GEMM multiplies random normal matrices: constant data (``ones``) flatters tensor cores
    by about 17% on an H100.
    """
    try:
        import cupy
    except ImportError as e:
        raise schedule.Unavailable(
            "cupy is not installed (the probe's priors fall back to the node's datasheet "
            "figures): install megagpu[gpu] or run the image's -gpu variant"
        ) from e
    start = time.perf_counter()
    out = readings.Benchmarks(measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with cupy.cuda.Device(index):
        for dtype, attr in ((cupy.float32, "fp32_tflops"), (cupy.float16, "fp16_tflops")):
            n = 8192
            rng = cupy.random.default_rng(0)
            a = rng.standard_normal((n, n), dtype=cupy.float32).astype(dtype)
            b = rng.standard_normal((n, n), dtype=cupy.float32).astype(dtype)
            cupy.matmul(a, b)
            cupy.cuda.Device().synchronize()
            runs, t0 = 0, time.perf_counter()
            while runs < 20 and time.perf_counter() - t0 < seconds_budget / 4:
                cupy.matmul(a, b)
                runs += 1
            cupy.cuda.Device().synchronize()
            setattr(out, attr, 2 * n**3 * runs / (time.perf_counter() - t0) / 1e12)
            del a, b
        size = 1 << 30
        src = cupy.empty(size, dtype=cupy.uint8)
        dst = cupy.empty_like(src)
        dst[...] = src
        cupy.cuda.Device().synchronize()
        runs, t0 = 0, time.perf_counter()
        while runs < 50 and time.perf_counter() - t0 < seconds_budget / 4:
            dst[...] = src
            runs += 1
        cupy.cuda.Device().synchronize()
        out.mem_gbps = 2 * size * runs / (time.perf_counter() - t0) / 1e9
        del src, dst
        cupy.get_default_memory_pool().free_all_blocks()
    out.seconds = time.perf_counter() - start
    return out
