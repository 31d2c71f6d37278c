"""Whether a pod could be scheduled on a node by its labels and taints (waiting's candidates).

kube-scheduler asks the extender only about nodes its own filters passed, and a node whose
devices are all taken (``megagpu.io/gpu`` counted by NodeResourcesFit) is not among them. To
wait for such a node, the extender checks what kube-scheduler would: the pod's nodeSelector,
required node affinity and tolerations of the node's NoSchedule and NoExecute taints (GPU pools
are often tainted, ``nvidia.com/gpu=present:NoSchedule``), and that the node is not cordoned.
It is conservative: an operator it does not implement or a garbled term makes the node no
candidate. The operator's queue classes ask only whether the pod wants a node at all
(``wants``): a job pinned to slow nodes is not sized by a fast one it can never run on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Obj = Mapping[str, Any]


def selects(pod: Obj, node: Obj) -> bool:
    """Whether ``pod``'s nodeSelector, required node affinity and taints allow ``node``."""
    try:
        return _schedulable(pod, node) and _wants(pod, node)
    except (AttributeError, TypeError, ValueError):
        return False


def wants(pod: Obj, node: Obj) -> bool:
    """Whether ``pod``'s nodeSelector and required node affinity allow ``node``.

    Its labels and name only: not its taints, which come and go, nor whether it is cordoned.
    """
    try:
        return _wants(pod, node)
    except (AttributeError, TypeError, ValueError):
        return False


def _schedulable(pod: Obj, node: Obj) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    return not any(
        taint.get("effect") in ("NoSchedule", "NoExecute")
        and not any(_tolerates(t, taint) for t in tolerations)
        for taint in (node.get("spec") or {}).get("taints") or []
    )


def _wants(pod: Obj, node: Obj) -> bool:
    spec, meta = pod.get("spec") or {}, node.get("metadata") or {}
    labels, name = meta.get("labels") or {}, meta.get("name")
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    return any(_term(term, labels, name) for term in terms)


def _term(term: Obj, labels: Obj, name: Any) -> bool:
    expressions = [(e, labels.get(e.get("key"))) for e in term.get("matchExpressions") or []]
    fields = [(e, name) for e in term.get("matchFields") or [] if e.get("key") == "metadata.name"]
    if len(fields) != len(term.get("matchFields") or []):
        return False
    if not expressions and not fields:
        return False  # an empty term matches nothing
    return all(_match(e, value) for e, value in expressions + fields)


def _match(expression: Obj, value: Any) -> bool:
    op, values = expression.get("operator"), expression.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    return False


def _tolerates(toleration: Obj, taint: Obj) -> bool:
    """Whether ``toleration`` tolerates ``taint``, by Kubernetes' rule.

    The effect matches (empty: any), then the key (empty with Exists: any) and, for Equal (the
    default operator), the value.
    """
    if toleration.get("effect") not in (None, "", taint.get("effect")):
        return False
    op = toleration.get("operator") or "Equal"
    if not toleration.get("key"):
        return op == "Exists"
    if toleration.get("key") != taint.get("key"):
        return False
    if op == "Exists":
        return True
    return op == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")
