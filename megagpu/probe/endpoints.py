"""The probe's HTTP endpoints: ``/metrics``, ``/healthz`` and ``/readyz`` on one port."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref import simple_server

from prometheus_client import CollectorRegistry, make_wsgi_app


class _Server(ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """No line per request."""


def app(registry: CollectorRegistry, ready: Callable[[], str]) -> Callable[..., Iterable[bytes]]:
    """A WSGI app; ``ready`` returns "" when ready, else why not (``/readyz`` says it, 503)."""
    metrics = make_wsgi_app(registry)

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            problem = ready() if path == "/readyz" else ""
            status = "503 Service Unavailable" if problem else "200 OK"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [f"{problem or 'ok'}\n".encode()]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return serve


def serve(host: str, port: int, registry: CollectorRegistry, ready: Callable[[], str]) -> None:
    """Serve in a daemon thread."""
    server = simple_server.make_server(
        host, port, app(registry, ready), server_class=_Server, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="probe-http", daemon=True).start()
