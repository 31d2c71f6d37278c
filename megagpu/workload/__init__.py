"""Real work on each backend: `megagpu bench-workload` (GEMM, memory-bound, attention-like)."""
