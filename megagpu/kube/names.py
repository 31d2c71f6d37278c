"""Names of megagpu's API group, resources, labels and annotations (DESIGN 3 and 9.2-9.4)."""

from __future__ import annotations

import re

GROUP = "megagpu.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
GPUWORKLOADS = "gpuworkloads"
GPUNODES = "gpunodes"
POLICIES = "gpuschedulingpolicies"
POLICY_NAME = "default"
SCHEDULER_NAME = "megagpu-scheduler"
RESOURCE_GPU = "megagpu.io/gpu"
RESOURCE_NVIDIA = "nvidia.com/gpu"
"""What the NVIDIA device plugin advertises (resource mode ``vendor``)."""
STATE_CONFIGMAP = "megagpu-policy-state"
PRIORITY_CLASS = "megagpu-{priority}"

LABEL_WORKLOAD = "megagpu.io/workload"
LABEL_BACKEND = "megagpu.io/backend.{backend}"
LABEL_GPU_PRODUCT = "megagpu.io/gpu.product"
LABEL_GPU_COUNT = "megagpu.io/gpu.count"
LABEL_GPU_MEMORY = "megagpu.io/gpu.memory-mib"
LABEL_POLICY_HISTORY = "megagpu.io/policy-state"

ANN_WORKLOAD_TYPE = "megagpu.io/workload-type"
ANN_MODEL = "megagpu.io/model"
ANN_BACKENDS = "megagpu.io/backends"
ANN_GPUS = "megagpu.io/gpus"
ANN_MEMORY = "megagpu.io/memory-mib"
ANN_PRECISION = "megagpu.io/precision"
ANN_PRIORITY = "megagpu.io/priority"
ANN_DECISION = "megagpu.io/decision"
ANN_ASSIGNED_BACKEND = "megagpu.io/assigned-backend"
ANN_ASSIGNED_DEVICES = "megagpu.io/assigned-devices"
ANN_ASSIGNED_DEVICE_IDS = "megagpu.io/assigned-device-ids"
ANN_POLICY_VERSION = "megagpu.io/policy-version"
ANN_WORK_AMOUNT = "megagpu.io/work-amount"
ANN_WORK_UNIT = "megagpu.io/work-unit"
ANN_DEADLINE = "megagpu.io/deadline"
"""RFC 3339 time by which the workload should finish (creation + deadlineSeconds): bounds a wait."""
ANN_WAITING_SINCE = "megagpu.io/waiting-since"
"""RFC 3339 time of a pending pod's first wait, written once by the operator (bounds a wait)."""
REPORT_WORK = "megagpu.io/work"
"""Key of the work a container reports in its JSON termination message (DESIGN 9.10)."""
REPORT_UNIT = "megagpu.io/work-unit"
"""Optional key of the unit of that report."""
ANN_SIM_WORK = "megagpu.io/sim-work"
"""Dev cluster only: the true work the simulated container does (never read by learning)."""
ANN_SIM_REPORT = "megagpu.io/sim-report"
"""Dev cluster only: ``false`` keeps the simulated container from reporting its work."""
ANN_SIM_EXIT_CODE = "megagpu.io/sim-exit-code"
ANN_SIM_FAIL_REASON = "megagpu.io/sim-fail-reason"
ANN_SIM_STUCK = "megagpu.io/sim-stuck-pending"
ANN_KWOK_NODE = "kwok.x-k8s.io/node"

_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str) -> str:
    """``text`` as a valid label value: allowed characters, at most 63, alphanumeric ends."""
    value = _LABEL_VALUE.sub("-", text)[:63]
    return value.strip("-_.")
