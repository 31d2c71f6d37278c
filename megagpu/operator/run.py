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
STEP_DOWN_GRACE_S = 2.0
"""How long kopf may take to finish after this replica stepped down, before a hard exit: it
ends before a standby may take over (renew deadline 10 s + 2 s < lease duration 15 s)."""
EXIT_STEPPED_DOWN = 3
"""The exit status of a replica that lost the Lease."""


def identity() -> str:
    """Identity of this replica: the pod name in a cluster, else host and pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


async def run(
    kubeconfig: Path | None,
    namespace: str,
    *,
    resource_mode: str = "megagpu",
    queue_by_size: bool = False,
    liveness: str = "http://127.0.0.1:8081/healthz",
    metrics_listen: tuple[str, int] = ("127.0.0.1", 8080),
) -> None:
    """Wait for the Lease (alive, as a standby), then reconcile until stopped or it is lost."""
    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(kubeconfig)  # kopf logs in with the same file
    api = kube_client.api_client(kubeconfig, pool=handlers.WORKERS)
    core = client.CoreV1Api(api)
    elector = lease_mod.Elector(
        lease_mod.Lease(client.CoordinationV1Api(api), namespace, identity())
    )
    custom = client.CustomObjectsApi(api)
    memo = handlers.Memo(core, custom, qstore.Store(core, namespace), namespace, resource_mode)
    memo.queue_by_size = queue_by_size
    memo.metrics = metrics_mod.Metrics(lambda: list(memo.workloads.values()))
    # A standby serves its (empty) metrics too: a Service over every replica answers from any.
    prometheus_client.start_http_server(
        metrics_listen[1], addr=metrics_listen[0], registry=memo.metrics.registry
    )
    standby = await _serve_standby_liveness(liveness)
    try:
        await elector.acquire()
    finally:
        await standby.cleanup()  # kopf serves liveness on the same address from now on
    stop = threading.Event()

    async def keep() -> None:
        why = await elector.keep()
        stop.set()  # kopf finishes and returns: this process is no leader any more
        await asyncio.sleep(STEP_DOWN_GRACE_S)
        _exit(f"kopf still ran {STEP_DOWN_GRACE_S} s after stepping down ({why})")

    renewer = asyncio.create_task(keep())
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
    if not elector.leading:
        _exit("stepped down")


def _exit(why: str) -> None:
    """End the process now, as client-go's leader election does when leadership is lost.

    A replica that lost the Lease must do no more work, and a graceful exit could wait forever
    on API calls hung with the API server it lost (the executor's threads are joined at exit).
    The Deployment starts it again, as a standby.
    """
    LOG.error("exiting: %s", why)
    logging.shutdown()
    os._exit(EXIT_STEPPED_DOWN)


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
