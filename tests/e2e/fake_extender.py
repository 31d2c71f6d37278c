"""A test extender for the real kube-scheduler: counts verbs, picks a node, binds it.

Run: python -m tests.e2e.fake_extender PORT KUBECONFIG PREFERRED_NODE
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

from aiohttp import web
from kubernetes import client

from megagpu.kube.client import api_client, send


def make_app(api: client.CoreV1Api, preferred: str) -> web.Application:
    counts: Counter[str] = Counter()

    async def filter_(request: web.Request) -> web.Response:
        args = await request.json()
        counts["filter"] += 1
        return web.json_response(
            {
                "NodeNames": args["NodeNames"],
                "FailedNodes": {},
                "FailedAndUnresolvableNodes": {},
                "Error": "",
            }
        )

    async def prioritize(request: web.Request) -> web.Response:
        args = await request.json()
        counts["prioritize"] += 1
        return web.json_response(
            [{"Host": n, "Score": 10 if n == preferred else 0} for n in args["NodeNames"]]
        )

    async def bind(request: web.Request) -> web.Response:
        args = await request.json()
        counts["bind"] += 1
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(
                name=args["PodName"], namespace=args["PodNamespace"], uid=args["PodUID"]
            ),
            target=client.V1ObjectReference(kind="Node", name=args["Node"], api_version="v1"),
        )
        await asyncio.to_thread(send, api.create_namespaced_binding, args["PodNamespace"], body)
        return web.json_response({"Error": ""})

    async def get_counts(_: web.Request) -> web.Response:
        return web.json_response(dict(counts))

    app = web.Application()
    app.add_routes(
        [
            web.post("/filter", filter_),
            web.post("/prioritize", prioritize),
            web.post("/bind", bind),
            web.get("/counts", get_counts),
        ]
    )
    return app


if __name__ == "__main__":
    port, kubeconfig, preferred = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    core = client.CoreV1Api(api_client(Path(kubeconfig), pool=32))
    web.run_app(make_app(core, preferred), host="127.0.0.1", port=port, print=None)
