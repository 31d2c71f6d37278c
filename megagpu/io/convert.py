"""``megagpu sim convert KIND IN -o OUT``: run one converter and write its file."""

from __future__ import annotations

from pathlib import Path

from megagpu.io import cluster_spec, converters, presets, tables
from megagpu.io.errors import InputError

KINDS = ("gavel-trace", "gavel-throughputs", "philly", "openb", "azure", "llamacpp")
TABLE_HEADER = (*tables.THROUGHPUT_COLUMNS, "source")


def convert(
    kind: str,
    source: Path,
    output: Path,
    *,
    load: float = 0.5,
    jobs: int = 2000,
    seed: int = 0,
    cluster: Path | None = None,
    throughputs: Path | None = None,
    scale: float = 0.02,
) -> None:
    """Convert ``source`` of upstream ``kind`` into megagpu's format at ``output``."""
    if kind == "gavel-trace":
        tables.write_csv(output, tables.TRACE_COLUMNS, converters.gavel_trace(source))
    elif kind == "gavel-throughputs":
        tables.write_csv(output, TABLE_HEADER, converters.gavel_throughputs(source))
    elif kind == "llamacpp":
        tables.write_csv(output, TABLE_HEADER, converters.llamacpp_throughputs(source))
    elif kind == "azure":
        tables.write_csv(output, tables.TRACE_COLUMNS, converters.azure_trace(source))
    elif kind == "openb":
        converters.write_yaml(output, converters.openb_cluster(source, scale=scale))
    elif kind == "philly":
        if cluster is None or throughputs is None:
            raise InputError(
                str(source), "philly needs --cluster and --throughputs (to size the load)"
            )
        nodes = [n for n in cluster_spec.load(cluster) if n.devices]
        table = tables.load_throughputs(throughputs)
        rows = [(r.model, r.device, r.backend, r.gpus, r.throughput, r.source) for r in table.rows]
        trace = converters.philly_trace(
            source,
            rows,
            jobs=jobs,
            load=load,
            seed=seed,
            capacity=presets.v100_capacity(nodes, table),
        )
        tables.write_csv(output, tables.TRACE_COLUMNS, trace)
    else:
        raise ValueError(f"unknown converter {kind!r}; choose one of {', '.join(KINDS)}")
