"""The HTTP services' telemetry (ingest, qa-sync): a server span per request, and `GET /metrics`
on the app itself. Apart from the rest of `llm_common.telemetry` because FastAPI is only theirs:
the worker's image has no web framework (llm-common's `web` extra).
"""

import os
import re
from collections.abc import Iterable

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import make_asgi_app
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_common.telemetry.metrics import REGISTRY

__all__ = ["DEFAULT_UNTRACED_PATHS", "instrument_fastapi", "mount_metrics"]

_FASTAPI_EXCLUDED_URLS_ENV = "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS"
# Scrapes and probes arrive every few seconds and say nothing about a request's journey.
DEFAULT_UNTRACED_PATHS = ("/metrics", "/healthz", "/readyz", "/livez")


def instrument_fastapi(
    app: FastAPI, untraced_paths: Iterable[str] = DEFAULT_UNTRACED_PATHS
) -> None:
    """A server span per HTTP request to `app`; call before the app serves its first request.

    `OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`, when set, replaces `untraced_paths`.
    """
    excluded = None if _FASTAPI_EXCLUDED_URLS_ENV in os.environ else _path_regexes(untraced_paths)
    FastAPIInstrumentor.instrument_app(app, excluded_urls=excluded)


def _path_regexes(paths: Iterable[str]) -> str:
    # The instrumentation searches these regexes in the full URL (without the query string).
    return ",".join(f"{re.escape(path)}$" for path in paths)


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
