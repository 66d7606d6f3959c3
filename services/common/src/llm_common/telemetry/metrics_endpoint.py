"""Serve `metrics.REGISTRY` to Prometheus: on an HTTP service's own app, or on its own port."""

from wsgiref.simple_server import WSGIServer

from fastapi import FastAPI
from prometheus_client import make_asgi_app, start_http_server
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_common.telemetry.metrics import REGISTRY

__all__ = ["mount_metrics", "start_metrics_server"]


class _MetricsApp:
    """prometheus-client's ASGI app as a class, so Starlette routes to it without wrapping.

    A `Mount("/metrics")` would answer `/metrics` with a redirect to `/metrics/`; a `Route` with
    a plain function endpoint would treat it as a request handler, not as an ASGI app.
    """

    def __init__(self) -> None:
        self._app: ASGIApp = make_asgi_app(REGISTRY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def mount_metrics(app: FastAPI, path: str = "/metrics") -> None:
    """Serve the metrics at `GET path` on `app` (kept out of the OpenAPI schema)."""
    app.router.routes.append(Route(path, _MetricsApp(), methods=["GET"], include_in_schema=False))


def start_metrics_server(port: int, host: str = "0.0.0.0") -> WSGIServer:
    """Serve the metrics on `host:port` from a daemon thread (for the worker: METRICS_PORT).

    Port 0 picks a free port (`server.server_port`); `server.shutdown()` then
    `server.server_close()` stops it.
    """
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return server
