from pathlib import Path

import pytest

from megagpu.io import cluster_spec, tables
from megagpu.io.errors import InputError

GOOD_TABLE = "model,device,backend,gpus,throughput,source\nm,v100,cuda,1,2.5,measured\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_malformed_yaml_names_file_line_and_column(tmp_path):
    path = write(tmp_path, "c.yaml", "nodes:\n  - name_prefix: a\n    count: [1,\n")
    with pytest.raises(InputError) as err:
        cluster_spec.load(path)
    assert str(path) in str(err.value) and err.value.line and err.value.column


@pytest.mark.parametrize(
    "group,needle",
    [
        ({"count": 1}, "missing key"),
        (
            {
                "name_prefix": "a",
                "count": 1,
                "device": "x",
                "devices_per_node": 1,
                "memory_mib_per_device": 1,
                "backends": ["cuda"],
                "colour": "red",
            },
            "unknown key",
        ),
        (
            {
                "name_prefix": "a",
                "count": -1,
                "device": "x",
                "devices_per_node": 1,
                "memory_mib_per_device": 1,
                "backends": ["cuda"],
            },
            "count",
        ),
        (
            {
                "name_prefix": "a",
                "count": 1,
                "device": "x",
                "devices_per_node": 1,
                "memory_mib_per_device": 1,
                "backends": ["rocm"],
            },
            "unknown backend",
        ),
        (
            {
                "name_prefix": "a",
                "count": 1,
                "device": "x",
                "devices_per_node": 1,
                "memory_mib_per_device": 1,
                "backends": ["cuda"],
                "benchmarks": {"fp16_tflops": float("nan")},
            },
            "fp16_tflops",
        ),
    ],
)
def test_bad_cluster_groups_name_the_problem(group, needle):
    with pytest.raises(InputError, match=needle):
        cluster_spec.parse({"nodes": [group]}, "spec")


def test_nodes_are_named_prefix_index():
    nodes = cluster_spec.parse(
        {
            "nodes": [
                {
                    "name_prefix": "gpu",
                    "count": 3,
                    "device": "t4",
                    "devices_per_node": 2,
                    "memory_mib_per_device": 1,
                    "backends": ["cuda"],
                }
            ]
        }
    )
    assert [n.name for n in nodes] == ["gpu-0", "gpu-1", "gpu-2"]


def test_unknown_csv_column_names_line_and_column(tmp_path):
    path = write(tmp_path, "t.csv", "model,device,backend,gpus,throughput,colour\n")
    with pytest.raises(InputError, match=r"t\.csv:1:6: unknown column 'colour'"):
        tables.load_throughputs(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "fast"])
def test_bad_numbers_name_the_field(tmp_path, value):
    path = write(
        tmp_path, "t.csv", f"model,device,backend,gpus,throughput\nm,v100,cuda,1,{value}\n"
    )
    with pytest.raises(InputError, match=r"t\.csv:2:5: throughput"):
        tables.load_throughputs(path)


def test_trace_model_missing_lists_known_models(tmp_path):
    table = tables.load_throughputs(write(tmp_path, "t.csv", GOOD_TABLE))
    trace = write(tmp_path, "w.csv", "arrival_s,workload_type,model,gpus,work\n0,training,x,1,5\n")
    with pytest.raises(InputError, match="known models: m"):
        tables.load_trace(trace, table, 8)


def test_empty_trace_is_an_error(tmp_path):
    table = tables.load_throughputs(write(tmp_path, "t.csv", GOOD_TABLE))
    trace = write(tmp_path, "w.csv", "arrival_s,workload_type,model,gpus,work\n")
    with pytest.raises(InputError, match="no jobs"):
        tables.load_trace(trace, table, 8)


def test_oversized_rows_are_an_error_or_dropped(tmp_path):
    table = tables.load_throughputs(write(tmp_path, "t.csv", GOOD_TABLE))
    trace = write(
        tmp_path,
        "w.csv",
        "arrival_s,workload_type,model,gpus,work\n0,training,m,16,5\n1,training,m,1,5\n",
    )
    with pytest.raises(InputError, match=r"w\.csv:2: row needs 16 GPUs"):
        tables.load_trace(trace, table, 8)
    jobs, dropped = tables.load_trace(trace, table, 8, drop_oversized=True)
    assert (len(jobs), dropped) == (1, 1)


def test_trace_optional_columns(tmp_path):
    table = tables.load_throughputs(write(tmp_path, "t.csv", GOOD_TABLE))
    trace = write(
        tmp_path,
        "w.csv",
        "arrival_s,workload_type,model,gpus,work,priority,deadline_s\n0,inference,m,1,5,high,60\n",
    )
    jobs, _ = tables.load_trace(trace, table, 8)
    assert jobs[0].workload.priority == "high" and jobs[0].workload.deadline_s == 60
