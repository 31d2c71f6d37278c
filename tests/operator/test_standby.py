import asyncio
import socket
import urllib.request

import pytest

from megagpu.operator import run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.asyncio
async def test_a_standby_answers_liveness_and_frees_the_port_for_kopf():
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    runner = await run._serve_standby_liveness(url)
    try:
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        assert b'"standby": true' in body
    finally:
        await runner.cleanup()
    with socket.socket() as s:  # kopf (aiohttp, SO_REUSEADDR) binds it once the lease is held
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
