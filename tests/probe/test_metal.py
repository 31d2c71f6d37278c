"""The metal backend on recorded system_profiler output (tests run on Linux)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from megagpu.probe import metal, node

DATA = Path(__file__).parent / "data"


def recorded(name: str):
    text = (DATA / name).read_text()

    def run(argv, **kwargs):
        assert argv[0] == "system_profiler" and "-json" in argv
        return subprocess.CompletedProcess(argv, 0, text, "")

    return run


def test_apple_silicon_gpu_uses_unified_memory_and_has_no_fp64():
    backend = metal.Metal("darwin", recorded("system_profiler_m2_ultra.json")).read()
    assert backend.available and backend.api_version == "metal3"
    (gpu,) = backend.devices
    assert gpu.name == "Apple M2 Ultra" and gpu.kind == "integrated"
    assert gpu.memory_bytes == 192 * 2**30 and gpu.fp64 is False and gpu.fp16 is True


def test_intel_mac_lists_integrated_and_discrete_gpus_with_their_memory():
    backend = metal.Metal("darwin", recorded("system_profiler_intel_amd.json")).read()
    names = [(d.name, d.kind, d.memory_bytes) for d in backend.devices]
    assert names == [
        ("Intel UHD Graphics 630", "integrated", 1536 * 2**20),
        ("AMD Radeon Pro 5500M", "gpu", 8 * 2**30),
    ]


def test_metal_gpus_are_counted_once_beside_the_cpu():
    backend = metal.Metal("darwin", recorded("system_profiler_m2_ultra.json")).read()
    reading = node.NodeReading("mac-studio-1")
    reading.backends.append(backend)
    assert [d.name for d in reading.gpus()] == ["Apple M2 Ultra"]


def test_elsewhere_or_broken_it_is_unavailable_with_a_reason():
    assert "only on macOS" in metal.Metal("linux").read().reason

    def missing(argv, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "system_profiler")

    def garbage(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 0, "not json", "")

    def failing(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 1, "", "boom")

    def no_metal(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 0, '{"SPDisplaysDataType": [{"_name": "x"}]}', "")

    for run, says in (
        (missing, "failed"),
        (garbage, "unreadable"),
        (failing, "exited 1"),
        (no_metal, "no Metal-capable GPU"),
    ):
        backend = metal.Metal("darwin", run).read()
        assert not backend.available and says in backend.reason


def test_sizes():
    assert metal.size_bytes("1536 MB") == 1536 * 2**20
    assert metal.size_bytes("8 GB") == 8 * 2**30
    assert metal.size_bytes("lots") is None and metal.size_bytes(None) is None
