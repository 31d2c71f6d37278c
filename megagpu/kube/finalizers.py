"""Clearing megagpu's finalizers before an uninstall, so that no GpuWorkload is left stuck."""

from __future__ import annotations

from kubernetes import client

from megagpu.kube import names

OURS = ("megagpu.io/", "kopf.zalando.org/")
"""Finalizer prefixes megagpu (through kopf) may have set."""


def clear(custom: client.CustomObjectsApi) -> tuple[int, int]:
    """Remove megagpu finalizers from every GpuWorkload: (workloads changed, finalizers removed)."""
    listed = custom.list_cluster_custom_object(names.GROUP, names.VERSION, names.GPUWORKLOADS)
    changed = removed = 0
    for gw in listed.get("items") or []:
        meta = gw["metadata"]
        finalizers = meta.get("finalizers") or []
        kept = [f for f in finalizers if not f.startswith(OURS)]
        if len(kept) == len(finalizers):
            continue
        custom.patch_namespaced_custom_object(
            names.GROUP,
            names.VERSION,
            meta["namespace"],
            names.GPUWORKLOADS,
            meta["name"],
            {"metadata": {"finalizers": kept, "resourceVersion": meta["resourceVersion"]}},
        )
        changed += 1
        removed += len(finalizers) - len(kept)
    return changed, removed
