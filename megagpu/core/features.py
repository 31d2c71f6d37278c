"""Features of a placement, in documented buckets.

Workload key ``type/model/gN/mM``:
  * gpus bucket ``g``: 0, 1, 2, 4 (3-4 GPUs), 8 (5-8 GPUs);
  * memory bucket ``m`` (per device): 8 (< 8 GiB), 24 (< 24 GiB), 48 (< 48 GiB),
    80 (< 80 GiB), 81 (80 GiB and more);
  * model classes beyond ``MAX_MODEL_CLASSES`` share the class ``other``.
Action key ``backend/device_class``: what the policy learns to prefer.
Context bucket (0..15) = 4 x free-share bucket + queue bucket:
  * free share of the node (free devices over devices): < 0.25, < 0.5, < 0.75, >= 0.75;
  * scheduler queue length: 0, 1-4, 5-19, >= 20.
"""

from __future__ import annotations

import numpy as np

from megagpu.core import model

MAX_MODEL_CLASSES = 50
OTHER_CLASS = "other"
CONTEXTS = 16
_GPU_EDGES = ((0, 0), (1, 1), (2, 2), (4, 4), (8, 8))
_MEMORY_EDGES_MIB = ((8 * 1024, 8), (24 * 1024, 24), (48 * 1024, 48), (80 * 1024, 80))
_FREE_EDGES = np.array([0.25, 0.5, 0.75])
_QUEUE_EDGES = np.array([1, 5, 20])


def gpus_bucket(gpus: int) -> int:
    """Bucket of a GPU count: 0, 1, 2, 4 or 8."""
    for upper, label in _GPU_EDGES:
        if gpus <= upper:
            return label
    return 8


def memory_bucket(memory_mib: int) -> int:
    """Bucket of per-device memory in GiB: 8, 24, 48, 80 or 81 (80 GiB and more)."""
    for upper, label in _MEMORY_EDGES_MIB:
        if memory_mib < upper:
            return label
    return 81


def model_key(workload: model.Workload, model_class: str) -> str:
    """Coarse key (type, model class, GPU bucket), shared by every memory size of one model.

    Not shared across GPU counts: multi-GPU scaling differs by device (Gavel's lm-bs10 runs on a
    P100 at 0.94 of a V100 with one GPU and at 0.21 with eight).
    """
    return f"{workload.workload_type}/{model_class}/g{gpus_bucket(workload.gpus)}"


def workload_key(workload: model.Workload, model_class: str) -> str:
    """Full workload key: type, model class, GPU bucket and memory bucket."""
    return f"{model_key(workload, model_class)}/m{memory_bucket(workload.memory_mib)}"


def action_key(backend: str, device_class: str) -> str:
    """Action key of a (backend, device class) pair."""
    return f"{backend}/{device_class}"


def context_buckets(free_share: np.ndarray, queue_length: int) -> np.ndarray:
    """Context bucket (0..15) for each candidate, from its node's free share and the queue."""
    free = np.searchsorted(_FREE_EDGES, free_share, side="right")
    queue = int(np.searchsorted(_QUEUE_EDGES, queue_length, side="right"))
    return np.asarray(free * 4 + queue, dtype=np.int64)
