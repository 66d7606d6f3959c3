"""Serve an ASGI app: from the command line (HOST/PORT), or on a thread inside tests."""

import argparse
import os
import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI

START_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
"""uvicorn's default idle keep-alive, and vLLM's (VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 unless set)."""


def listen_args(parser: argparse.ArgumentParser) -> None:
    """--host and --port, defaulting to the HOST and PORT environment variables."""
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))


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


class BackgroundServer:
    """`app` on a uvicorn thread, on a free loopback port: a real HTTP server for tests.

    The socket is bound before the thread starts, so the port is known and cannot be taken by
    another process in between. `keep_alive_s`: how long an idle connection stays open.
    """

    def __init__(self, app: FastAPI, keep_alive_s: int = KEEP_ALIVE_S) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=keep_alive_s,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
