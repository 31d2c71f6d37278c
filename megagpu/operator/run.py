"""Compose and run the operator: hold the Lease, then run kopf with megagpu's handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import urllib.parse
from pathlib import Path

import kopf
import prometheus_client
from aiohttp import web
from kubernetes import client

from megagpu.kube import client as kube_client
from megagpu.kube import lease as lease_mod
from megagpu.kube import qstore
from megagpu.operator import handlers, registry
from megagpu.operator import metrics as metrics_mod

LOG = logging.getLogger("megagpu.operator")


def identity() -> str:
    """Identity of this replica: the pod name in a cluster, else host and pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


async def run(
    kubeconfig: Path | None,
    namespace: str,
    *,
    resource_mode: str = "megagpu",
    liveness: str = "http://127.0.0.1:8081/healthz",
    metrics_listen: tuple[str, int] = ("127.0.0.1", 8080),
) -> None:
    """Wait for the Lease, then reconcile until stopped or the Lease is lost."""
    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(kubeconfig)  # kopf logs in with the same file
    api = kube_client.api_client(kubeconfig, pool=handlers.WORKERS)
    core = client.CoreV1Api(api)
    lease = lease_mod.Lease(client.CoordinationV1Api(api), namespace, identity())
    loop = asyncio.get_running_loop()
    custom = client.CustomObjectsApi(api)
    memo = handlers.Memo(core, custom, qstore.Store(core, namespace), namespace, resource_mode)
    memo.metrics = metrics_mod.Metrics(lambda: list(memo.workloads.values()))
    # A standby serves its (empty) metrics too: a Service over every replica answers from any.
    prometheus_client.start_http_server(
        metrics_listen[1], addr=metrics_listen[0], registry=memo.metrics.registry
    )
    standby = await _serve_standby_liveness(liveness)
    try:
        while not await _acquire(loop, lease):
            LOG.info("standby: another operator holds the lease %s", lease_mod.NAME)
            await asyncio.sleep(lease_mod.RENEW_S / 2)
    finally:
        await standby.cleanup()  # kopf serves liveness on the same address from now on
    LOG.info("holding lease %s as %s", lease_mod.NAME, lease.identity)
    stop = threading.Event()
    renewer = asyncio.create_task(_renew(lease, stop))
    try:
        await kopf.operator(
            registry=registry.make_registry(),
            memo=memo,
            clusterwide=True,
            standalone=True,
            liveness_endpoint=liveness,
            stop_flag=stop,
        )
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer


async def _serve_standby_liveness(url: str) -> web.AppRunner:
    """Answer the liveness endpoint while waiting for the Lease.

    A standby is alive; without an answer a kubelet would restart it every few probes.
    """
    parsed = urllib.parse.urlsplit(url)

    async def alive(_: web.Request) -> web.Response:
        return web.json_response({"standby": True, "lease": lease_mod.NAME})

    app = web.Application()
    app.router.add_get(parsed.path or "/", alive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parsed.hostname, parsed.port).start()
    return runner


async def _acquire(loop: asyncio.AbstractEventLoop, lease: lease_mod.Lease) -> bool:
    """One attempt to hold the lease; False (retry later) while the API server is away."""
    try:
        return bool(await loop.run_in_executor(None, lease.try_acquire))
    except Exception as e:  # noqa: BLE001 - API away or erroring: stay standby and retry
        LOG.warning("cannot reach the lease yet: %s", e)
        return False


async def _renew(lease: lease_mod.Lease, stop: threading.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await asyncio.sleep(lease_mod.RENEW_S)
        try:
            held = await loop.run_in_executor(None, lease.try_acquire)
        except Exception as e:  # noqa: BLE001 - API away: keep trying until the lease expires
            LOG.warning("lease renewal failed: %s", e)
            continue
        if not held:
            LOG.error("lost the lease %s; stopping", lease_mod.NAME)
            stop.set()
