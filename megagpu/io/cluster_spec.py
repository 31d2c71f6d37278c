"""Cluster specs (DESIGN 9.5): YAML groups of identical nodes named ``<prefix>-<index>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from megagpu.core import model
from megagpu.io.errors import InputError

GROUP_KEYS = {
    "name_prefix",
    "count",
    "device",
    "devices_per_node",
    "memory_mib_per_device",
    "backends",
    "benchmarks",
}
REQUIRED = GROUP_KEYS - {"benchmarks"}
BENCHMARK_KEYS = {"fp32_tflops", "fp16_tflops", "mem_gbps"}


def load(path: str | Path) -> list[model.Node]:
    """Parse a cluster spec file into nodes."""
    text = _read(path)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        raise InputError(
            str(path), f"malformed YAML: {getattr(e, 'problem', e)}", line, column
        ) from e
    return parse(doc, str(path))


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise InputError(str(path), f"cannot read the file: {e.strerror}") from e


def parse(doc: Any, source: str = "<cluster spec>") -> list[model.Node]:
    """Nodes from an already-loaded spec document."""
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list) or not doc["nodes"]:
        raise InputError(source, "expected a mapping with a non-empty list `nodes: [...]`")
    unknown = set(doc) - {"nodes"}
    if unknown:
        raise InputError(source, f"unknown top-level key(s) {sorted(unknown)}; only `nodes`")
    nodes: list[model.Node] = []
    for i, group in enumerate(doc["nodes"]):
        nodes.extend(_group(group, f"{source}: nodes[{i}]"))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise InputError(source, "two groups produce the same node name: make name_prefix unique")
    return nodes


def _group(group: Any, where: str) -> list[model.Node]:
    if not isinstance(group, dict):
        raise InputError(where, "each group must be a mapping")
    missing, unknown = REQUIRED - set(group), set(group) - GROUP_KEYS
    if missing:
        raise InputError(where, f"missing key(s) {sorted(missing)}")
    if unknown:
        raise InputError(where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(GROUP_KEYS)}")
    bench = group.get("benchmarks") or {}
    if not isinstance(bench, dict) or set(bench) - BENCHMARK_KEYS:
        raise InputError(where, f"benchmarks takes only {sorted(BENCHMARK_KEYS)}")
    try:
        count = _integer(group["count"], "count", 1)
        devices = _integer(group["devices_per_node"], "devices_per_node", 0)
        memory = _integer(group["memory_mib_per_device"], "memory_mib_per_device", 0)
        backends = group["backends"]
        if not isinstance(backends, list) or not all(isinstance(b, str) for b in backends):
            raise model.ValidationError("backends must be a list such as [cuda, vulkan]")
        benchmarks = model.Benchmarks(
            **{k: _number(v, f"benchmarks.{k}") for k, v in bench.items()}
        )
        return [
            model.Node(
                name=f"{group['name_prefix']}-{index}",
                device_class=str(group["device"]),
                backends=tuple(backends),
                devices=devices,
                memory_mib_per_device=memory,
                benchmarks=benchmarks,
            )
            for index in range(count)
        ]
    except model.ValidationError as e:
        raise InputError(where, str(e)) from e


def _integer(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise model.ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise model.ValidationError(f"{name} must be a number, got {value!r}")
    return model.check_finite(name, value)
