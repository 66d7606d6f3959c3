"""Serve an ASGI app: from the command line (HOST/PORT), or on a thread inside tests; the same
thread serves a server of several sockets (devstack.fakes.llm's simulator)."""

import argparse
import asyncio
import os
import socket
import threading
import time
from types import TracebackType
from typing import Protocol, Self

import uvicorn
from fastapi import FastAPI

START_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
"""uvicorn's default idle keep-alive, and vLLM's (VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 unless set)."""


def listen_args(parser: argparse.ArgumentParser) -> None:
    """--host and --port, defaulting to the HOST and PORT environment variables."""
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))


def uvicorn_server(app: FastAPI, keep_alive_s: int = KEEP_ALIVE_S) -> uvicorn.Server:
    """Quiet, with a short graceful shutdown: for tests and the simulator's ports."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=keep_alive_s,
    )
    return uvicorn.Server(config)


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve in the foreground until SIGINT/SIGTERM."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def loopback_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound TCP socket (port 0: a free one), reusable at once after a close.

    IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on connections whose socket
    says TCP, and without it uvicorn's response body waits for the client's delayed ACK of its
    headers: 44 ms a call, measured on the fake LLM (2 ms with it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class Served(Protocol):
    """What serves on sockets it is given, as `uvicorn.Server` does."""

    started: bool
    should_exit: bool

    async def serve(self, sockets: list[socket.socket] | None = None) -> None: ...


class BackgroundServer:
    """`app` on a thread of its own, on free loopback ports: a real HTTP server for tests.

    `app` is an ASGI app (served by uvicorn, `keep_alive_s`: how long an idle connection stays
    open) or a `Served` given `sockets` sockets (the simulator: API and control port). The
    sockets are bound before the thread starts, so the ports are known and cannot be taken by
    another process in between.
    """

    def __init__(
        self, app: FastAPI | Served, keep_alive_s: int = KEEP_ALIVE_S, sockets: int = 1
    ) -> None:
        self._sockets = [loopback_socket() for _ in range(sockets)]
        self.urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in self._sockets]
        """One per socket, in order."""
        self.port: int = self._sockets[0].getsockname()[1]
        self.url = self.urls[0]
        self._server = uvicorn_server(app, keep_alive_s) if isinstance(app, FastAPI) else app
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=self._sockets))

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the background server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
