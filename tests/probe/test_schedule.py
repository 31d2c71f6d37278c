"""Benchmarks run at start, then per device every period, never on a busy device."""

from __future__ import annotations

import pytest

from megagpu.probe import readings, schedule


def backend(*utilizations):
    devices = [readings.Device(i, "GPU", utilization=u) for i, u in enumerate(utilizations)]
    return readings.Backend("cuda", True, devices=devices)


def test_due_idle_devices_run_and_the_weakest_result_is_reported():
    now, calls = [0.0], []

    def run(index):
        calls.append(index)
        return readings.Benchmarks(fp16_tflops=900.0 - 100 * index)

    plan = schedule.BenchmarkSchedule({"cuda": run}, 60, clock=lambda: now[0])
    first = plan.apply(backend(0.0, 0.95))  # device 1 is busy: not measured
    assert calls == [0] and first.benchmarks.fp16_tflops == 900.0
    now[0] = 30.0
    plan.apply(backend(0.0, 0.0))  # device 0 not due; device 1 idle now and never measured
    assert calls == [0, 1]
    now[0] = 61.0
    again = plan.apply(backend(0.0, 0.0))
    assert calls == [0, 1, 0] and again.benchmarks.fp16_tflops == 800.0


def test_unavailable_or_unknown_backends_are_left_alone():
    plan = schedule.BenchmarkSchedule({"cuda": lambda i: readings.Benchmarks()}, 60)
    down = readings.Backend("cuda", False, "NVML failed")
    assert plan.apply(down).benchmarks is None
    assert plan.apply(readings.Backend("vulkan", True)).benchmarks is None
    with pytest.raises(ValueError):
        schedule.BenchmarkSchedule({}, 0)


def test_a_benchmark_that_cannot_run_is_tried_once_and_said_why(caplog):
    calls = []

    def run(index):
        calls.append(index)
        raise schedule.Unavailable("cupy is not installed")

    plan = schedule.BenchmarkSchedule({"cuda": run}, 60, clock=lambda: 1000.0 * len(calls))
    assert plan.apply(backend(0.0, 0.0)).benchmarks is None
    assert plan.apply(backend(0.0, 0.0)).benchmarks is None
    assert calls == [0]
    assert plan.unavailable == {"cuda": "cupy is not installed"}
    assert "cuda benchmarks are off on this node: cupy is not installed" in caplog.text


def test_simulated_devices_are_never_benchmarked():
    plan = schedule.BenchmarkSchedule({"cuda": lambda i: pytest.fail("measured a fake")}, 60)
    fake = readings.Backend(
        "cuda", True, driver_version="simulated", devices=[readings.Device(0, "sim")]
    )
    assert plan.apply(fake).benchmarks is None
