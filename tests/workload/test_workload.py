"""`megagpu bench-workload`: real compute on numpy and on Vulkan (Mesa's lavapipe), checked
against numpy, reported by the work contract; faults become reasons, never tracebacks."""

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from megagpu.cli import main
from megagpu.kube import convert, names
from megagpu.workload import cpu, kernels, run, shaders, vulkan


@pytest.fixture
def built(tmp_path, monkeypatch):
    shaders.compile_all(tmp_path)
    monkeypatch.setenv("MEGAGPU_SPIRV_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("kernel", kernels.KERNELS)
def test_cpu_does_at_least_the_requested_work(kernel):
    size = {"gemm": 128, "stream": 4096, "attention": 64}[kernel]
    per_pass = kernels.work_per_pass(kernel, size)
    result = cpu.run(kernels.Spec(kernel, 2.5 * per_pass, size=size))
    assert result.work == pytest.approx(3 * per_pass)
    assert 0 <= result.check_error < kernels.TOLERANCE["fp32"]
    assert result.seconds > 0


@pytest.mark.parametrize("n", [64, 130])
def test_vulkan_gemm_matches_numpy(built, n):
    import vulkan as vk

    gpu = vulkan.Compute(vk, 0)
    try:
        _, got = vulkan._gemm(gpu, n, 3, 2)
    finally:
        gpu.close()
    a, b = kernels.gemm_inputs(n, 3)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_vulkan_stream_matches_numpy(built):
    import vulkan as vk

    gpu = vulkan.Compute(vk, 0)
    try:
        _, got = vulkan._stream(gpu, 1 << 18, 5, 3)
    finally:
        gpu.close()
    want = kernels.stream_reference(*kernels.stream_inputs(1 << 18, 5), passes=3)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_vulkan_backend_reports_work_done(built):
    outcome = run.bench(kernels.Spec("gemm", 0.01, size=96), "vulkan", {"MEGAGPU_DEVICES": "0"})
    assert outcome.ok, outcome
    assert outcome[run.WORK_KEY] == pytest.approx(kernels.work_per_pass("gemm", 96) * 6, rel=1e-3)
    assert outcome["unit"] == "GFLOP" and outcome["checkError"] < 1e-5


def test_vulkan_without_shaders_or_device_is_unavailable(tmp_path, built, monkeypatch):
    outcome = run.bench(kernels.Spec("gemm", 1), "vulkan", {"GGML_VK_VISIBLE_DEVICES": "7"})
    assert not outcome.ok and "device 7 does not exist" in outcome["error"]
    monkeypatch.setenv("MEGAGPU_SPIRV_DIR", str(tmp_path / "empty"))
    outcome = run.bench(kernels.Spec("stream", 1), "vulkan", {})
    assert not outcome.ok and "shader saxpy is not built" in outcome["error"]
    assert "glslang" in outcome["error"]


def test_a_shader_that_does_not_compile_is_named(tmp_path):
    (tmp_path / "broken.comp").write_text("#version 450\nvoid main() { undefined_thing(); }\n")
    with pytest.raises(shaders.ShaderError, match="broken.comp did not compile"):
        shaders.compile_all(tmp_path / "out", tmp_path)
    assert not (tmp_path / "out" / "broken.spv").exists()


def test_a_corrupt_shader_is_not_loaded(tmp_path, monkeypatch):
    (tmp_path / "gemm.spv").write_bytes(b"not spir-v at all")
    monkeypatch.setenv("MEGAGPU_SPIRV_DIR", str(tmp_path))
    outcome = run.bench(kernels.Spec("gemm", 1), "vulkan", {})
    assert not outcome.ok and "is not SPIR-V" in outcome["error"]


@pytest.mark.parametrize("module", ["cupy", "vulkan"])
def test_missing_library_makes_the_backend_unavailable(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)
    backend = "cuda" if module == "cupy" else "vulkan"
    outcome = run.bench(kernels.Spec("gemm", 1), backend, {})
    assert not outcome.ok
    assert outcome["error"].startswith(f"{backend} backend unavailable")


def test_a_gpu_lost_mid_run_is_a_reason(monkeypatch):
    class Lost(Exception):
        pass

    def device(index):
        raise Lost("cudaErrorDevicesUnavailable: all CUDA-capable devices are busy or unavailable")

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(Device=device), float32="float32")
    monkeypatch.setitem(sys.modules, "cupy", fake)
    outcome = run.bench(kernels.Spec("gemm", 1), "cuda", {"CUDA_VISIBLE_DEVICES": "GPU-x"})
    assert not outcome.ok and "CUDA failed: Lost cudaErrorDevicesUnavailable" in outcome["error"]


def test_a_wrong_result_is_reported(monkeypatch):
    monkeypatch.setitem(kernels.TOLERANCE, "fp32", 0.0)
    outcome = run.bench(kernels.Spec("gemm", 0.01, size=32), "cpu", {})
    assert not outcome.ok and "wrong result" in outcome["error"]


@pytest.mark.parametrize(
    ("backend", "env", "index"),
    [
        ("cuda", {"CUDA_VISIBLE_DEVICES": "GPU-abc", "MEGAGPU_DEVICES": "3"}, 0),
        ("cuda", {"MEGAGPU_DEVICES": "3,4"}, 3),
        ("vulkan", {"GGML_VK_VISIBLE_DEVICES": "2", "MEGAGPU_DEVICES": "1"}, 2),
        ("vulkan", {"MEGAGPU_DEVICES": "1"}, 1),
        ("cpu", {}, 0),
    ],
)
def test_device_comes_from_the_device_plugin_environment(backend, env, index):
    assert run.device_of(backend, env) == index


def test_command_writes_the_termination_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEGAGPU_BACKEND", "cpu")
    log = tmp_path / "termination-log"
    rc = main(["bench-workload", "--work", "0.02", "--size", "100", "--termination-log", str(log)])
    assert rc == 0
    report = json.loads(log.read_text())
    assert report[run.WORK_KEY] >= 0.02 and report["backend"] == "cpu"
    assert len(log.read_bytes()) <= run.MESSAGE_LIMIT


def test_the_operator_reads_the_reported_work_and_its_unit(tmp_path, monkeypatch):
    monkeypatch.setenv("MEGAGPU_BACKEND", "cpu")
    log = tmp_path / "termination-log"
    rc = main(["bench-workload", "--work", "0.02", "--size", "100", "--termination-log", str(log)])
    assert rc == 0
    assert run.UNIT_KEY == names.REPORT_UNIT and run.WORK_KEY == names.REPORT_WORK
    pod = {
        "status": {"containerStatuses": [{"state": {"terminated": {"message": log.read_text()}}}]}
    }
    got = convert.work_report(pod)
    assert got is not None and got.problem is None
    assert got.amount == json.loads(log.read_text())[run.WORK_KEY] and got.unit == "GFLOP"


def test_command_with_an_unusable_backend_exits_1_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setenv("MEGAGPU_BACKEND", "cuda")
    log = tmp_path / "termination-log"
    assert main(["bench-workload", "--termination-log", str(log)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cuda backend unavailable: cupy is not usable")
    assert "Traceback" not in err and err.count("\n") == 1
    assert run.WORK_KEY not in json.loads(log.read_text())


def test_the_cpu_example_runs_its_command(tmp_path, monkeypatch):
    import yaml

    root = Path(__file__).resolve().parents[2]
    example = yaml.safe_load((root / "examples/workloads/bench-gemm-cpu.yaml").read_text())
    container = example["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/megagpu:dev"
    monkeypatch.setenv("MEGAGPU_BACKEND", example["spec"]["backends"][0])
    log = tmp_path / "termination-log"
    assert main([*container["args"], "--termination-log", str(log)]) == 0
    report = json.loads(log.read_text())
    work = float(container["args"][container["args"].index("--work") + 1])
    assert report[run.WORK_KEY] >= work and report["unit"] == "GFLOP"
