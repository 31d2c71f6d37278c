"""The cpu backend: numpy (fp32 and fp64; fp16 and bf16 requests run at fp32, and say so)."""

from __future__ import annotations

import math
import os
import time

import numpy as np

from megagpu.workload import kernels

DTYPES = {"fp64": np.float64, "fp32": np.float32}


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    scores = q @ k.transpose(0, 2, 1) * np.asarray(1 / math.sqrt(q.shape[-1]), dtype=q.dtype)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (scores / scores.sum(axis=-1, keepdims=True)) @ v


def _passes(spec: kernels.Spec, dtype: type, n: int, passes: int) -> tuple[float, np.ndarray]:
    """Run ``passes`` of the kernel at size ``n``; (seconds, the last result)."""
    start = time.perf_counter()
    if spec.kernel == "gemm":
        a, b = (m.astype(dtype) for m in kernels.gemm_inputs(n, spec.seed))
        start = time.perf_counter()
        for _ in range(passes):
            out = a @ b
    elif spec.kernel == "stream":
        x, out = (v.astype(dtype) for v in kernels.stream_inputs(n, spec.seed))
        alpha = dtype(kernels.STREAM_ALPHA)
        start = time.perf_counter()
        for _ in range(passes):
            out += alpha * x
    else:
        q, k, v = (m.astype(dtype) for m in kernels.attention_inputs(n, spec.seed))
        start = time.perf_counter()
        for _ in range(passes):
            out = _attention(q, k, v)
    return time.perf_counter() - start, out


def run(spec: kernels.Spec, device: int = 0) -> kernels.Result:
    """Check at a small size against float64 numpy, then do the requested work."""
    precision = spec.precision if spec.precision in DTYPES else "fp32"
    dtype = DTYPES[precision]
    n = kernels.CHECK_SIZE[spec.kernel]
    _, got = _passes(spec, dtype, n, 2 if spec.kernel == "stream" else 1)
    if spec.kernel == "gemm":
        want = np.matmul(*(m.astype(np.float64) for m in kernels.gemm_inputs(n, spec.seed)))
    elif spec.kernel == "stream":
        want = kernels.stream_reference(*kernels.stream_inputs(n, spec.seed), passes=2)
    else:
        want = kernels.attention_reference(*kernels.attention_inputs(n, spec.seed))
    error = kernels.check(spec.kernel, precision, kernels.relative_error(got, want))
    passes = spec.passes()
    seconds, _ = _passes(spec, dtype, spec.side, passes)
    name = f"{os.cpu_count()} CPU cores"
    work = passes * kernels.work_per_pass(spec.kernel, spec.side)
    return kernels.Result(work, seconds, error, name, precision)
