"""The cuda backend: cupy (the ``gpu`` extra) GEMM at a precision, saxpy, an attention step.

cupy is imported inside ``run``: missing cupy, no CUDA driver or device, and a CUDA error
during the run (a GPU lost) make the backend unavailable with the reason. Inputs are random
normal data generated on the device (constant data flatters tensor cores).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from megagpu.workload import kernels

HINT = "install megagpu[gpu] (cupy) and run where the NVIDIA driver and a GPU are visible"
DTYPES = {"fp64": "float64", "fp32": "float32", "fp16": "float16"}


def _attention(cp: Any, q: Any, k: Any, v: Any) -> Any:
    scale = cp.asarray(1 / math.sqrt(q.shape[-1]), dtype=q.dtype)
    scores = cp.matmul(q, k.transpose(0, 2, 1)) * scale
    scores = cp.exp(scores - scores.max(axis=-1, keepdims=True))
    return cp.matmul(scores / scores.sum(axis=-1, keepdims=True), v)


def _passes(cp: Any, spec: kernels.Spec, dtype: Any, n: int, host: bool, passes: int) -> Any:
    """Run ``passes`` at size ``n``; (seconds, last result). ``host``: numpy's inputs (check)."""
    rng = cp.random.default_rng(spec.seed)
    if spec.kernel == "gemm":
        a, b = (
            (cp.asarray(m) for m in kernels.gemm_inputs(n, spec.seed))
            if host
            else (rng.standard_normal((n, n), dtype=cp.float32) for _ in range(2))
        )
        a, b = a.astype(dtype), b.astype(dtype)
        step = lambda: cp.matmul(a, b)  # noqa: E731
    elif spec.kernel == "stream":
        x, y = (
            (cp.asarray(v) for v in kernels.stream_inputs(n, spec.seed))
            if host
            else (rng.random(n, dtype=cp.float32) for _ in range(2))
        )
        saxpy = cp.ElementwiseKernel("float32 x, float32 a", "float32 y", "y = a * x + y", "saxpy")
        alpha = np.float32(kernels.STREAM_ALPHA)
        step = lambda: saxpy(x, alpha, y)  # noqa: E731
    else:
        q, k, v = (
            (cp.asarray(m).astype(dtype) for m in kernels.attention_inputs(n, spec.seed))
            if host
            else (
                rng.standard_normal((kernels.ATTENTION_HEADS, n, kernels.ATTENTION_DIM)).astype(
                    dtype
                )
                for _ in range(3)
            )
        )
        step = lambda: _attention(cp, q, k, v)  # noqa: E731
    cp.cuda.Device().synchronize()
    start = time.perf_counter()
    for _ in range(passes):
        out = step()
    cp.cuda.Device().synchronize()
    return time.perf_counter() - start, (y if spec.kernel == "stream" else out)


def _work(cp: Any, spec: kernels.Spec, device: int) -> kernels.Result:
    if spec.precision not in DTYPES:
        raise kernels.Unavailable(f"cupy has no {spec.precision} type; use fp16, fp32 or fp64")
    precision = "fp32" if spec.kernel == "stream" else spec.precision
    dtype = getattr(cp, DTYPES[precision])
    with cp.cuda.Device(device):
        n = kernels.CHECK_SIZE[spec.kernel]
        _, got = _passes(cp, spec, dtype, n, True, 2 if spec.kernel == "stream" else 1)
        if spec.kernel == "gemm":
            a, b = (m.astype(DTYPES[precision]) for m in kernels.gemm_inputs(n, spec.seed))
            want = a.astype(np.float64) @ b.astype(np.float64)
        elif spec.kernel == "stream":
            want = kernels.stream_reference(*kernels.stream_inputs(n, spec.seed), passes=2)
        else:
            inputs = (m.astype(DTYPES[precision]) for m in kernels.attention_inputs(n, spec.seed))
            want = kernels.attention_reference(*inputs)
        error = kernels.check(spec.kernel, precision, kernels.relative_error(cp.asnumpy(got), want))
        passes = spec.passes()
        seconds, _ = _passes(cp, spec, dtype, spec.side, False, passes)
        name = cp.cuda.runtime.getDeviceProperties(device)["name"]
        cp.get_default_memory_pool().free_all_blocks()
    work = passes * kernels.work_per_pass(spec.kernel, spec.side)
    name = name.decode() if isinstance(name, bytes) else str(name)
    return kernels.Result(work, seconds, error, name, precision)


def run(spec: kernels.Spec, device: int = 0) -> kernels.Result:
    """Check at a small size against numpy, then do the requested work on CUDA ``device``."""
    try:
        import cupy as cp
    except (ImportError, OSError) as e:
        raise kernels.Unavailable(f"cupy is not usable: {e}; {HINT}") from e
    try:
        return _work(cp, spec, device)
    except (kernels.Unavailable, kernels.WrongResult):
        raise
    except Exception as e:  # noqa: BLE001 - CUDARuntimeError (no device, device lost), ...
        raise kernels.Unavailable(f"CUDA failed: {type(e).__name__} {e}; {HINT}") from e
