"""Files: cluster specs, throughput tables, traces, converters and shipped data."""
