"""The Kubernetes client factory (the official client; one per component)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException


class ClusterUnreachable(RuntimeError):
    """No usable kubeconfig or in-cluster configuration."""


def api_client(kubeconfig: Path | None = None, pool: int = 0) -> client.ApiClient:
    """A client from ``kubeconfig``, else the in-cluster account, else $KUBECONFIG.

    ``pool`` sets the HTTP connection pool size when many requests run at once.
    """
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            if not kubeconfig.exists():
                raise ClusterUnreachable(f"kubeconfig {kubeconfig} does not exist")
            config.load_kube_config(str(kubeconfig), client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                config.load_kube_config(client_configuration=configuration)  # $KUBECONFIG
    except ConfigException as e:
        raise ClusterUnreachable(
            f"no usable Kubernetes configuration: {e}; pass --kubeconfig or run in a pod"
        ) from e
    if pool:
        configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)


def context_name(kubeconfig: Path | None) -> str:
    """The kubeconfig's current context (what the user calls the cluster), or ``in-cluster``."""
    try:
        _, active = config.list_kube_config_contexts(
            str(kubeconfig) if kubeconfig is not None else None
        )
    except (ConfigException, OSError):
        return "in-cluster"
    return str((active or {}).get("name", "in-cluster"))


def send(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Make an API call whose reply is not needed, without parsing it into models.

    The raw reply is read to its end, so its connection goes back to the pool; an unread one
    is dropped, and the next call pays a new TLS handshake.
    """
    call(*args, _preload_content=False, **kwargs).read()
