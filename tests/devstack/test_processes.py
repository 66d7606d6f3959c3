"""A started process is ready only when it is the one answering its ready URL."""

import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from devstack.processes import ManagedProcess, ProcessFailedToStart, free_port


@pytest.fixture
def someone_else_on_a_port() -> Iterator[int]:
    """Another server already answering 200 on a port: what a port picked free and taken by
    another test session's server before this process bound it looks like."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def http_server(port: int, log: Path) -> ManagedProcess:
    return ManagedProcess(
        name="http-server",
        argv=[sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        log_path=log,
        ready_url=f"http://127.0.0.1:{port}/",
    )


def test_a_process_whose_port_another_server_answers_fails_to_start(
    someone_else_on_a_port: int, tmp_path: Path
) -> None:
    process = http_server(someone_else_on_a_port, tmp_path / "taken.log")
    try:
        with pytest.raises(ProcessFailedToStart, match="exited"):
            process.start(timeout=30)
    finally:
        process.stop()


def test_a_process_answering_its_own_port_is_ready(tmp_path: Path) -> None:
    process = http_server(free_port(), tmp_path / "own.log")
    try:
        process.start(timeout=30)
        assert process.is_running()
    finally:
        process.stop()
