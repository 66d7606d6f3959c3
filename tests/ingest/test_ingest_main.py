"""`python -m feedback_ingest` serves on HOST:PORT from the environment, or refuses to start."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from devstack.processes import ManagedProcess, free_port, python_module
from devstack.queues import FeedbackQueues

from tests.support.ingest import assert_envelope


def test_the_module_serves_the_app_on_host_and_port(
    feedback_queues: FeedbackQueues, record: dict[str, Any], tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "FEEDBACK_QUEUE_URL": feedback_queues.requests,
        "INGEST_API_KEYS": "k1,k2",
        "LOG_LEVEL": "debug",
    }
    process = ManagedProcess(
        name="ingest",
        argv=python_module("feedback_ingest"),
        env=env,
        log_path=tmp_path / "ingest.log",
        ready_url=f"{url}/readyz",
    ).start(timeout=30)
    try:
        assert_envelope(httpx.get(f"{url}/readyz"), 200)
        response = httpx.post(f"{url}/ai/feedback", json=record, headers={"X-API-Key": "k2"})
        assert_envelope(response, 202)
    finally:
        process.stop()
    log = process.tail(lines=1000)
    assert "Application shutdown complete" in log  # SIGTERM drains and runs the lifespan's exit
    assert "k1" not in log


def test_without_a_queue_url_it_exits_naming_the_setting(tmp_path: Path) -> None:
    result = subprocess.run(  # the environment of the tests has no FEEDBACK_QUEUE_URL
        [sys.executable, "-m", "feedback_ingest"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "feedback_queue_url" in result.stderr
