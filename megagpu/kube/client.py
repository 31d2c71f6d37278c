"""The Kubernetes client factory (the official client; one per component)."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException


class ClusterUnreachable(RuntimeError):
    """No usable kubeconfig or in-cluster configuration."""


def api_client(kubeconfig: Path | None = None) -> client.ApiClient:
    """A client from ``kubeconfig``, else the in-cluster service account."""
    try:
        if kubeconfig is not None:
            if not kubeconfig.exists():
                raise ClusterUnreachable(f"kubeconfig {kubeconfig} does not exist")
            return config.new_client_from_config(str(kubeconfig))
        config.load_incluster_config()
        return client.ApiClient()
    except ConfigException as e:
        raise ClusterUnreachable(
            f"no usable Kubernetes configuration: {e}; pass --kubeconfig or run in a pod"
        ) from e
