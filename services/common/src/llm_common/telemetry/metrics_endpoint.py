"""Serve `metrics.REGISTRY` to Prometheus on a port of its own (the worker: METRICS_PORT); an
HTTP service mounts it on its app instead (`web.mount_metrics`)."""

from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from llm_common.telemetry.metrics import REGISTRY

__all__ = ["start_metrics_server"]


def start_metrics_server(port: int, host: str = "0.0.0.0") -> WSGIServer:
    """Serve the metrics on `host:port` from a daemon thread (for the worker: METRICS_PORT).

    Port 0 picks a free port (`server.server_port`); `server.shutdown()` then
    `server.server_close()` stops it.
    """
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return server
