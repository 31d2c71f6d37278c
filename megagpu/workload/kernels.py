"""What each kernel computes, how much work one pass is, and the numpy check of a result.

Work units (DESIGN 9.10): ``GFLOP`` for gemm and attention (2n^3 per n-cube product; 4 B S^2 D
per attention step), ``GB`` moved for stream (12 bytes a float: read x, read y, write y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

KERNELS = ("gemm", "stream", "attention")
UNITS = {"gemm": "GFLOP", "stream": "GB", "attention": "GFLOP"}
DEFAULT_SIZE = {"gemm": 4096, "stream": 1 << 26, "attention": 1024}
"""Matrix side, floats, or sequence length: big enough to keep a GPU busy."""
CHECK_SIZE = {"gemm": 200, "stream": 10_000, "attention": 100}
"""Sizes of the numpy check (not multiples of the GEMM tile, so the edges are checked too)."""
ATTENTION_HEADS = 32
"""Batch x heads of the attention step."""
ATTENTION_DIM = 64
"""Head dimension of the attention step."""
STREAM_ALPHA = 0.5
TOLERANCE = {"fp64": 1e-10, "fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2}
"""Largest relative (Frobenius) error of a result against numpy's float64."""


class Unavailable(RuntimeError):
    """The backend cannot run this work here; the message says why (no traceback is shown)."""


class WrongResult(RuntimeError):
    """The backend ran, but its result differs from numpy's beyond the tolerance."""


@dataclass(frozen=True)
class Spec:
    """One request: which kernel, at what precision and size, and how much work."""

    kernel: str
    work: float
    """Requested amount in the kernel's unit; whole passes are run until it is reached."""
    precision: str = "fp32"
    size: int = 0
    """0 = ``DEFAULT_SIZE`` of the kernel."""
    seed: int = 0

    @property
    def side(self) -> int:
        """The size used."""
        return self.size or DEFAULT_SIZE[self.kernel]

    @property
    def unit(self) -> str:
        """The work unit of the kernel."""
        return UNITS[self.kernel]

    def passes(self) -> int:
        """Passes that do at least ``work`` (at least one)."""
        return max(1, math.ceil(self.work / work_per_pass(self.kernel, self.side)))


class Result(NamedTuple):
    """What a backend did."""

    work: float
    """Work done, in the kernel's unit."""
    seconds: float
    """Wall time of the passes (after data set-up and the check)."""
    check_error: float
    """Relative error of the check against numpy."""
    device: str
    precision: str
    """The precision the work ran at."""


def work_per_pass(kernel: str, size: int) -> float:
    """Work of one pass of ``kernel`` at ``size``, in its unit."""
    if kernel == "gemm":
        return 2 * size**3 / 1e9
    if kernel == "stream":
        return 12 * size / 1e9
    return 4 * ATTENTION_HEADS * size**2 * ATTENTION_DIM / 1e9


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """Frobenius norm of the difference over that of the reference."""
    got64 = np.asarray(got, dtype=np.float64)
    want64 = np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(got64 - want64) / max(np.linalg.norm(want64), 1e-300))


def check(kernel: str, precision: str, error: float) -> float:
    """``error`` when within the precision's tolerance, else raise WrongResult."""
    if not error <= TOLERANCE[precision]:
        raise WrongResult(
            f"{kernel} at {precision}: relative error {error:.3g} against numpy is above "
            f"{TOLERANCE[precision]:g}"
        )
    return error


def gemm_inputs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two random normal n x n float32 matrices (never constant: that flatters tensor cores)."""
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, n), dtype=np.float32),
        rng.standard_normal((n, n), dtype=np.float32),
    )


def stream_inputs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The stream kernel's x and y, float32."""
    rng = np.random.default_rng(seed)
    return rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)


def stream_reference(x: np.ndarray, y: np.ndarray, passes: int) -> np.ndarray:
    """The stream kernel's y after ``passes`` of y = alpha x + y, in float64."""
    return y.astype(np.float64) + passes * STREAM_ALPHA * x.astype(np.float64)


def attention_inputs(s: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q, K, V of shape (heads, s, dim), float32."""
    rng = np.random.default_rng(seed)
    shape = (ATTENTION_HEADS, s, ATTENTION_DIM)
    return tuple(rng.standard_normal(shape, dtype=np.float32) for _ in range(3))  # type: ignore[return-value]


def attention_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """softmax(Q K^T / sqrt(d)) V in float64."""
    q64, k64, v64 = (a.astype(np.float64) for a in (q, k, v))
    scores = q64 @ k64.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (scores / scores.sum(axis=-1, keepdims=True)) @ v64
