"""Server-side apply of megagpu's CRDs (what `helm upgrade` does not do for a chart's crds/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

FIELD_MANAGER = "megagpu"


def load(directory: Path) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in the YAML files of ``directory``."""
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    if not docs:
        raise ValueError(f"no CustomResourceDefinition in {directory}/*.yaml")
    return docs


def apply(api: client.ApiClient, docs: list[dict[str, Any]]) -> list[str]:
    """Apply ``docs`` server-side as the ``megagpu`` field manager; returns their names."""
    ext = client.ApiextensionsV1Api(api)
    for doc in docs:
        ext.patch_custom_resource_definition(
            doc["metadata"]["name"],
            doc,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    return [d["metadata"]["name"] for d in docs]
