"""Which benchmarks a node's priors come from: its GPUs' measurements, else the datasheet's."""

from __future__ import annotations

from megagpu.kube import convert

NODE = {
    "metadata": {
        "name": "n",
        "labels": {"megagpu.io/backend.cuda": "true"},
        "annotations": {"megagpu.io/benchmarks": "fp32=51.0,fp16=756.0,gbps=3350"},
    },
    "status": {"allocatable": {"megagpu.io/gpu": "1"}},
}
CPU = {"available": True, "benchmarks": {"fp32Tflops": 0.2, "measuredAt": "2026-12-06T00:00:00Z"}}
GPU = [{"index": 0, "id": "GPU-1", "healthy": True}]


def gpunode(devices, **backends):
    return {"status": {"devices": devices, "backends": backends}}


def test_a_gpu_node_without_a_gpu_measurement_keeps_its_datasheet_not_the_cpu_gemm():
    bench = convert.node_from_k8s(NODE, gpunode(GPU, cpu=CPU, cuda={"available": True})).benchmarks
    assert (bench.fp32_tflops, bench.fp16_tflops, bench.mem_gbps) == (51.0, 756.0, 3350.0)


def test_a_gpu_measurement_wins_over_the_datasheet():
    cuda = {"available": True, "benchmarks": {"fp32Tflops": 48.0, "fp16Tflops": 620.0}}
    bench = convert.node_from_k8s(NODE, gpunode(GPU, cpu=CPU, cuda=cuda)).benchmarks
    assert (bench.fp32_tflops, bench.fp16_tflops) == (48.0, 620.0)


def test_a_cpu_only_node_is_measured_by_its_cpu():
    cpu_node = {"metadata": {"name": "c", "labels": {}}, "status": {}}
    bench = convert.node_from_k8s(cpu_node, gpunode([], cpu=CPU)).benchmarks
    assert bench.fp32_tflops == 0.2


def test_garbled_backends_fall_back_to_the_datasheet():
    bench = convert.node_from_k8s(NODE, {"status": {"devices": GPU, "backends": "x"}}).benchmarks
    assert bench.fp16_tflops == 756.0
