import types

from prometheus_client import CollectorRegistry, generate_latest

from megagpu.probe import collector, cpu, cuda, node, readings, vulkan


class NVMLError(Exception):
    pass


class FakeNVML(types.SimpleNamespace):
    """Enough of pynvml for one H100, with switchable faults."""

    NVMLError = NVMLError
    NVMLError_NotSupported = type("NVMLError_NotSupported", (NVMLError,), {})
    NVMLError_GpuIsLost = type("NVMLError_GpuIsLost", (NVMLError,), {})
    NVML_TEMPERATURE_GPU, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC = 1, 0

    def __init__(self):
        super().__init__(fail_init=False, lost=False, power_supported=True)

    def nvmlInit(self):
        if self.fail_init:
            raise NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlSystemGetDriverVersion(self):
        return "580.159.04"

    def nvmlDeviceGetHandleByIndex(self, i):
        if self.lost:
            raise self.NVMLError_GpuIsLost("GPU is lost")
        return i

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h):
        return "GPU-74562409-93a1-5054-0ca4-1cd8b0e59c93"

    def nvmlDeviceGetPciInfo(self, h):
        return types.SimpleNamespace(busId=b"00000000:00:06.0")

    def nvmlDeviceGetMinorNumber(self, h):
        return 0

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=80 * 2**30, used=2**30)

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=42, memory=7)

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return (9, 0)

    def nvmlDeviceGetPowerUsage(self, h):
        if not self.power_supported:
            raise self.NVMLError_NotSupported("Not Supported")
        return 73625

    def nvmlDeviceGetTemperature(self, h, kind):
        return 35

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return 2_493_429

    def nvmlDeviceGetTotalEccErrors(self, h, a, b):
        return 0


def test_reads_inventory_and_live_values():
    backend = cuda.Cuda(FakeNVML()).read()
    (d,) = backend.devices
    assert backend.available and backend.driver_version == "580.159.04"
    assert d.name == "NVIDIA H100 80GB HBM3" and d.pci_bus_id == "00000000:00:06.0"
    assert d.utilization == 0.42 and d.power_w == 73.625 and d.compute_capability == "9.0"
    assert d.fp64 and d.fp16 and d.healthy


def test_not_supported_is_na_not_zero():
    nvml = FakeNVML()
    nvml.power_supported = False
    (d,) = cuda.Cuda(nvml).read().devices
    assert d.power_w is None and d.healthy


def test_init_failure_is_unavailable_then_recovers():
    nvml = FakeNVML()
    nvml.fail_init = True
    probe = cuda.Cuda(nvml)
    first = probe.read()
    assert not first.available and "Driver Not Loaded" in first.reason
    nvml.fail_init = False
    assert probe.read().available


def test_lost_device_is_reported_unhealthy_without_a_crash():
    nvml = FakeNVML()
    probe = cuda.Cuda(nvml)
    nvml.lost = True
    (d,) = probe.read().devices
    assert not d.healthy and "lost" in d.reason
    nvml.lost = False
    assert probe.read().devices[0].healthy


def scrape(reading):
    registry = CollectorRegistry()
    registry.register(collector.ProbeCollector(lambda: reading))
    return registry


def test_dcgm_families_with_dcgm_labels_and_untyped_counters():
    reading = node.read([cuda.Cuda(FakeNVML()), cpu.Cpu()], hostname="node-1")
    registry = scrape(reading)
    labels = {
        "gpu": "0",
        "UUID": "GPU-74562409-93a1-5054-0ca4-1cd8b0e59c93",
        "device": "nvidia0",
        "modelName": "NVIDIA H100 80GB HBM3",
        "pci_bus_id": "00000000:00:06.0",
        "Hostname": "node-1",
    }
    assert registry.get_sample_value("DCGM_FI_DEV_GPU_UTIL", labels) == 42.0
    assert registry.get_sample_value("DCGM_FI_DEV_FB_USED", labels) == 1024.0
    assert registry.get_sample_value("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", labels) == 2493429
    text = generate_latest(registry).decode()
    assert "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION untyped" in text
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total" not in text
    assert registry.get_sample_value("megagpu_backend_available", {"backend": "cuda"}) == 1.0


def test_dcgm_can_be_switched_off():
    reading = node.read([cuda.Cuda(FakeNVML())])
    registry = CollectorRegistry()
    registry.register(collector.ProbeCollector(lambda: reading, dcgm=False))
    assert "DCGM_" not in generate_latest(registry).decode()


def test_registration_does_not_read_devices():
    calls = []
    registry = CollectorRegistry()
    registry.register(collector.ProbeCollector(lambda: calls.append(1) or node.NodeReading("h")))
    assert calls == []


def test_vulkan_without_a_loader_is_unavailable_with_a_reason():
    backend = vulkan.Vulkan().read()
    if not backend.available:
        assert "Vulkan" in backend.reason


def test_a_gpu_seen_by_nvml_and_vulkan_counts_once_and_cpu_devices_not_at_all():
    nvml = readings.Device(0, "NVIDIA H100 80GB HBM3", uuid="GPU-1")
    reading = node.NodeReading(
        "h",
        [
            readings.Backend("cuda", True, devices=[nvml]),
            readings.Backend(
                "vulkan",
                True,
                devices=[
                    readings.Device(0, "NVIDIA H100 80GB HBM3", kind="gpu"),
                    readings.Device(1, "llvmpipe (LLVM 15.0.6, 256 bits)", kind="cpu"),
                    readings.Device(2, "AMD Radeon PRO W7900", kind="gpu", uuid="GPU-2"),
                ],
            ),
        ],
    )
    assert [d.name for d in reading.gpus()] == ["NVIDIA H100 80GB HBM3", "AMD Radeon PRO W7900"]


def test_a_broken_backend_does_not_stop_the_others():
    class Broken:
        name = "metal"

        def read(self):
            raise RuntimeError("boom")

    reading = node.read([Broken(), cpu.Cpu()])
    assert not reading.backend("metal").available and reading.backend("cpu").available


def test_cli_once_json_and_prometheus():
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "megagpu", "probe", "--once"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    assert json.loads(out)["backends"]["cpu"]["available"] is True
    text = subprocess.run(
        [sys.executable, "-m", "megagpu", "probe", "--once", "--format", "prometheus"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    assert 'megagpu_backend_available{backend="cpu"} 1.0' in text


def test_simulated_nodes_publish_plausible_values():
    from megagpu.io import cluster_spec
    from megagpu.kube import gpunodes
    from megagpu.probe import simulated
    from tests.e2e.conftest import ROOT

    nodes = cluster_spec.load(ROOT / "examples/clusters/dev.yaml")
    readings_ = {r().hostname: r() for r in simulated.readers(nodes, clock=lambda: 1000.0)}
    h100 = gpunodes.status(readings_["h100-0"])
    assert h100["summary"] == {"backends": "cuda,vulkan", "devices": 8, "healthy": 8}
    device = h100["backends"]["cuda"]["devices"][0]
    assert 0 <= device["utilization"] <= 1 and device["usedMiB"] <= device["memoryMiB"]
    assert gpunodes.status(readings_["m2-ultra-0"])["summary"]["devices"] == 1
    assert gpunodes.status(readings_["cpu-0"])["summary"]["devices"] == 0


def test_gpunode_names_each_gpu_once_with_index_id_and_health():
    from megagpu.kube import gpunodes

    reading = node.NodeReading(
        "n",
        [
            readings.Backend(
                "cuda",
                True,
                devices=[
                    readings.Device(0, "H100", uuid="GPU-a"),
                    readings.Device(1, "H100", uuid="GPU-b", healthy=False),
                ],
            ),
            readings.Backend(
                "vulkan",
                True,
                devices=[
                    readings.Device(0, "H100", uuid="gpu-a"),
                    readings.Device(1, "W7900", uuid=""),
                ],
            ),
        ],
    )
    assert gpunodes.status(reading)["devices"] == [
        {"index": 0, "id": "GPU-a", "uuid": "GPU-a", "backend": "cuda", "healthy": True},
        {"index": 1, "id": "GPU-b", "uuid": "GPU-b", "backend": "cuda", "healthy": False},
        {"index": 2, "id": "vulkan-2", "uuid": "", "backend": "vulkan", "healthy": True},
    ]
