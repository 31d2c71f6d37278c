"""The Q-state ConfigMap (DESIGN 9.4): ``megagpu-policy-state``, key ``state.json``."""

from __future__ import annotations

from typing import Any

from megagpu.core import qpolicy, qstate

KEY = "state.json"


def policy_from_configmap(obj: dict[str, Any]) -> qpolicy.QPolicy:
    """The policy in a ConfigMap object; raises qstate.StateError when it is unusable."""
    text = (obj.get("data") or {}).get(KEY)
    if not isinstance(text, str):
        raise qstate.SchemaError(f"ConfigMap has no key {KEY}")
    return qstate.loads(text)
