"""Converters from the upstream data (../shared/data) to megagpu's formats (DESIGN 9.5)."""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
import re
from pathlib import Path
from typing import Any

import yaml

from megagpu.io import devices
from megagpu.io.errors import InputError

TRAINING_DEVICES = ("t4", "a10", "a100", "h100", "l40s", "rtx4090", "mi210", "g2", "g3")
"""Devices without Gavel measurements: their training rows are derived."""
GAVEL_MEASURED = {"k80": "k80_steps_per_s", "p100": "p100_steps_per_s", "v100": "v100_steps_per_s"}
LLAMA_DEVICES = {
    "H100 PCIe 80GB": "h100",
    "A100 PCIe 80GB": "a100",
    "L40S 48GB": "l40s",
    "4090 24GB": "rtx4090",
    "M2 Ultra 76-Core GPU 192GB": "m2-ultra",
}
LLAMA_MODELS = {
    "8B_Q4_K_M": "llama3-8b-q4",
    "8B_F16": "llama3-8b-f16",
    "70B_Q4_K_M": "llama3-70b-q4",
    "70B_F16": "llama3-70b-f16",
}
LLM_DERIVED = ("t4", "v100", "a10", "mi210")
Row = tuple[Any, ...]


def slug(job_type: str) -> str:
    """``ResNet-18 (batch size 16)`` -> ``resnet-18-bs16`` (a valid label value)."""
    text = re.sub(r"\s*\(batch size (\d+)\)", r"-bs\1", job_type.strip())
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-")


def _csv(path: str | Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError as e:
        raise InputError(str(path), f"cannot read the file: {e.strerror}") from e


def gavel_throughputs(path: str | Path) -> list[Row]:
    """Gavel's isolated throughputs (measured K80/P100/V100) plus derived rows for other devices."""
    rows: list[Row] = []
    for line, record in enumerate(_csv(path), 2):
        try:
            name, gpus = slug(record["job_type"]), int(record["num_gpus"])
            measured = {d: float(record[c]) for d, c in GAVEL_MEASURED.items()}
        except (KeyError, ValueError) as e:
            raise InputError(str(path), f"not a Gavel throughput row: {e}", line) from e
        for device, value in measured.items():
            rows.append((name, device, "cuda", gpus, round(value, 4), "measured"))
        for device in TRAINING_DEVICES:
            for backend in devices.DEVICES[device].backends:
                value = devices.derive(
                    measured["v100"],
                    "v100",
                    device,
                    backend,
                    "training",
                    devices.TRAINING_INTENSITY,
                )
                rows.append((name, device, backend, gpus, round(value, 4), "derived"))
    return rows


def gavel_trace(path: str | Path) -> list[Row]:
    """A Gavel trace (TSV: job type, command, ..., total steps, arrival, scale) as a trace."""
    rows: list[Row] = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise InputError(str(path), f"cannot read the file: {e.strerror}") from e
    for number, text in enumerate(lines, 1):
        fields = text.split("\t")
        if len(fields) != 7:
            raise InputError(
                str(path), f"expected 7 tab-separated fields, found {len(fields)}", number
            )
        try:
            steps, arrival, scale = int(fields[4]), float(fields[5]), int(fields[6])
        except ValueError as e:
            raise InputError(str(path), f"bad number: {e}", number) from e
        rows.append((arrival, "training", slug(fields[0]), scale, steps))
    return rows


def llamacpp_throughputs(path: str | Path) -> list[Row]:
    """llama.cpp generation tokens/s (CUDA and Metal, measured) plus derived rows."""
    rows: list[Row] = []
    for record in _csv(path):
        if record.get("metric") != "generation_tok_s":
            continue
        name, _, count = record["gpu"].partition("  ")
        if name not in LLAMA_DEVICES:
            continue
        device = LLAMA_DEVICES[name]
        for column, model_name in LLAMA_MODELS.items():
            if record[column] == "OOM":
                continue
            value = float(record[column])
            backend = devices.DEVICES[device].backends[0]
            rows.append((model_name, device, backend, int(count or 1), value, "measured"))
            if device == "h100" and not count:
                for other in LLM_DERIVED:
                    spec = devices.DEVICES[other]
                    if spec.memory_mib < _model_mib(model_name):
                        continue
                    derived = devices.derive(
                        value,
                        "h100",
                        other,
                        spec.backends[0],
                        "inference",
                        devices.INFERENCE_INTENSITY,
                    )
                    rows.append(
                        (model_name, other, spec.backends[0], 1, round(derived, 3), "derived")
                    )
    return rows


def _model_mib(model_name: str) -> int:
    """Memory a model needs, from its parameter count and precision (weights only)."""
    params = 70e9 if "70b" in model_name else 8e9
    bytes_per = 0.6 if model_name.endswith("q4") else 2.0
    return int(params * bytes_per / 2**20)


def azure_trace(path: str | Path, *, window_s: float = 5.0, speedup: float = 1.0) -> list[Row]:
    """Azure LLM inference requests batched into serving jobs, one per ``window_s``.

    Each job generates the tokens of the requests that arrived in its window (work = tokens);
    the model is chosen by the requests' context size (long contexts need the 70B model here).
    """
    records = _csv(path)
    if not records:
        raise InputError(str(path), "no requests in the trace")
    start = None
    windows: dict[tuple[int, str], int] = {}
    for line, record in enumerate(records, 2):
        try:
            stamp = dt.datetime.fromisoformat(record["TIMESTAMP"][:26])
            context, generated = int(record["ContextTokens"]), int(record["GeneratedTokens"])
        except (KeyError, ValueError) as e:
            raise InputError(str(path), f"not an Azure trace row: {e}", line) from e
        start = start or stamp
        index = int((stamp - start).total_seconds() // window_s)
        model_name = "llama3-70b-q4" if context > 4096 else "llama3-8b-q4"
        windows[(index, model_name)] = windows.get((index, model_name), 0) + generated
    return [
        (round(index * window_s / speedup, 3), "batchInference", model_name, 1, tokens)
        for (index, model_name), tokens in sorted(windows.items())
    ]


def openb_cluster(path: str | Path, *, scale: float = 0.05) -> dict[str, Any]:
    """The Alibaba openb node list as a cluster spec, group sizes scaled by ``scale``."""
    groups: dict[tuple[str, int], int] = {}
    for line, record in enumerate(_csv(path), 2):
        try:
            gpus, product = int(record["gpu"]), record["model"].strip()
        except (KeyError, ValueError) as e:
            raise InputError(str(path), f"not an openb node row: {e}", line) from e
        device = "cpu" if gpus == 0 else _openb_device(product)
        groups[(device, gpus)] = groups.get((device, gpus), 0) + 1
    nodes = []
    for (device, gpus), total in sorted(groups.items()):
        count = max(1, math.floor(total * scale + 0.5))
        nodes.append(devices.group(f"openb-{device}-{gpus}g", count, device, gpus))
    return {"nodes": nodes}


def _openb_device(product: str) -> str:
    mapping = {
        "A10": "a10",
        "P100": "p100",
        "T4": "t4",
        "V100M16": "v100",
        "V100M32": "v100",
        "G2": "g2",
        "G3": "g3",
    }
    return mapping.get(product, "t4")


def philly_trace(
    path: str | Path,
    throughputs: list[Row],
    *,
    jobs: int,
    load: float,
    capacity: float,
    seed: int,
) -> list[Row]:
    """Synthetic arrivals from the Philly job distribution at ``load``.

    Each job keeps a real (duration, GPU count) pair; its model is drawn from the models with a
    V100 row for that GPU count, and work = duration x V100 throughput (as Gavel does).
    Arrivals are Poisson with the rate that makes the offered V100-GPU-seconds per second equal
    ``load x capacity`` (``capacity`` in V100-equivalent GPUs).
    """
    rng = random.Random(seed)
    pairs = []
    for line, record in enumerate(_csv(path), 2):
        try:
            pairs.append((float(record["duration_s"]), int(record["num_gpus"])))
        except (KeyError, ValueError) as e:
            raise InputError(str(path), f"not a Philly row: {e}", line) from e
    v100 = {}
    for model_name, device, _, gpus, value, _ in throughputs:
        if device == "v100":
            v100.setdefault(gpus, []).append((model_name, value))
    sample = [pairs[rng.randrange(len(pairs))] for _ in range(jobs)]
    sample = [(d, g) for d, g in sample if g in v100]
    mean_demand = sum(d * g for d, g in sample) / max(len(sample), 1)
    rate = load * capacity / mean_demand
    now, rows = 0.0, []
    for duration, gpus in sample:
        now += rng.expovariate(rate)
        model_name, value = v100[gpus][rng.randrange(len(v100[gpus]))]
        rows.append((round(now, 3), "training", model_name, gpus, round(duration * value, 3)))
    return rows


def write_yaml(path: str | Path, doc: dict[str, Any]) -> None:
    """Write a YAML document."""
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False))
