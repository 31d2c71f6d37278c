from pathlib import Path

import pytest

from megagpu.io import cluster_spec, converters, presets, tables
from megagpu.io.errors import InputError

FIX = Path(__file__).parent / "fixtures"


def test_slug_is_a_label_value():
    assert converters.slug("ResNet-18 (batch size 16)") == "resnet-18-bs16"
    assert converters.slug("LM (batch size 80)") == "lm-bs80"


def test_gavel_throughputs_keep_measured_and_mark_derived():
    rows = converters.gavel_throughputs(FIX / "gavel_isolated.csv")
    measured = {(r[0], r[1], r[3]): r[4] for r in rows if r[5] == "measured"}
    assert measured[("resnet-18-bs16", "v100", 1)] == pytest.approx(32.3534)
    derived = [r for r in rows if r[5] == "derived"]
    assert {r[1] for r in derived} >= {"a100", "h100", "t4", "mi210"}
    vulkan = {
        r[1]: r[4] for r in derived if r[2] == "vulkan" and r[0] == "resnet-18-bs16" and r[3] == 1
    }
    cuda = {
        r[1]: r[4] for r in derived if r[2] == "cuda" and r[0] == "resnet-18-bs16" and r[3] == 1
    }
    assert vulkan["h100"] == pytest.approx(0.55 * cuda["h100"], rel=1e-3)


def test_gavel_trace_rows():
    rows = converters.gavel_trace(FIX / "gavel.trace")
    assert rows[0] == (0.0, "training", "transformer-bs128", 1, 95121)


def test_llamacpp_measured_cuda_and_metal_with_derived_rows():
    rows = converters.llamacpp_throughputs(FIX / "llamacpp.csv")
    backends = {(r[1], r[2]) for r in rows if r[5] == "measured"}
    assert ("h100", "cuda") in backends and ("m2-ultra", "metal") in backends
    assert any(r[1] == "h100" and r[3] == 4 for r in rows)
    assert any(r[1] == "mi210" and r[2] == "vulkan" and r[5] == "derived" for r in rows)


def test_azure_windows_sum_generated_tokens():
    rows = converters.azure_trace(FIX / "azure.csv", window_s=3600)
    assert sum(r[4] for r in rows) > 0
    assert all(r[1] == "batchInference" for r in rows)


def test_openb_cluster_is_a_valid_spec(tmp_path):
    doc = converters.openb_cluster(FIX / "openb.csv", scale=1.0)
    nodes = cluster_spec.parse(doc)
    assert {n.device_class for n in nodes} == {"cpu", "g2", "t4"}
    assert len(nodes) == 12


def test_philly_trace_hits_the_requested_load():
    table = presets.training_table()
    rows = [(r.model, r.device, r.backend, r.gpus, r.throughput, r.source) for r in table.rows]
    trace = converters.philly_trace(
        FIX / "philly.csv", rows, jobs=500, load=0.5, capacity=10.0, seed=0
    )
    assert len(trace) > 400 and all(
        a <= b for a, b in zip([r[0] for r in trace], [r[0] for r in trace[1:]], strict=False)
    )


def test_malformed_upstream_rows_name_the_line(tmp_path):
    bad = tmp_path / "x.trace"
    bad.write_text("only\tthree\tfields\n")
    with pytest.raises(InputError, match=r"x\.trace:1: expected 7"):
        converters.gavel_trace(bad)


def test_shipped_files_parse():
    table = tables.load_throughputs(presets.DATA / "gavel_throughputs.csv")
    assert "resnet-50-bs64" in table.models()
    jobs, _ = tables.load_trace(presets.DATA / "gavel_trace_0e4a51.csv", table, 8)
    assert len(jobs) > 1000
    llm = tables.load_throughputs(presets.DATA / "llm_throughputs.csv")
    tables.load_trace(presets.DATA / "azure_llm_trace.csv", llm, 8)
