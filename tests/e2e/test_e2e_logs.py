"""No configured secret ever reaches a log file, and the services' lines are JSON tied to the
request and its trace (real processes at LOG_LEVEL=DEBUG, with failures that quote credentials)."""

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack.stack import Stack
from llm_common.contracts.example import example_weekly_record

from tests.support.factories import StartStack

pytestmark = pytest.mark.e2e

INGEST_KEYS = ("ingest-key-e2e-4f1b9c", "ingest-key-rotated-77aa")
LLM_API_KEY = "llm-key-e2e-93c1d0"
# Not the receiver's secret: every callback fails its signature check (401).
WORKER_CALLBACK_SECRET = "whsec_" + base64.b64encode(b"e2e-logs-wrong-secret-0123456789").decode()
REQUEST_ID = "e2e-logs-1"


def _post(stack: Stack, headers: dict[str, str]) -> httpx.Response:
    body = example_weekly_record(REQUEST_ID, member_id=33)
    return httpx.post(f"{stack.ingest_url}/ai/feedback", json=body, headers=headers, timeout=10)


def _wait_for_bad_signature(stack: Stack, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{stack.callback_url}/stats", timeout=5).json()["bad_signatures"] == 0:
        assert time.monotonic() < deadline, stack.processes["worker"].tail(40)
        time.sleep(0.2)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_secrets_stay_out_of_every_log_line(start_stack: StartStack) -> None:
    stack = start_stack(
        llm="fake",
        ingest_env={"INGEST_API_KEYS": ",".join(INGEST_KEYS), "LOG_LEVEL": "DEBUG"},
        worker_env={
            "LLM_API_KEY": LLM_API_KEY,
            "CALLBACK_SECRET": WORKER_CALLBACK_SECRET,
            "CALLBACK_MAX_ATTEMPTS": "1",
            "LOG_LEVEL": "DEBUG",
        },
    )

    assert _post(stack, {"X-API-Key": INGEST_KEYS[0][:-1]}).status_code == 401
    assert _post(stack, {"Authorization": f"Bearer {INGEST_KEYS[1]}x"}).status_code == 401
    assert _post(stack, {"Authorization": f"Bearer {INGEST_KEYS[1]}"}).status_code == 202
    _wait_for_bad_signature(stack)
    stack.stop()  # every process flushes and writes its last lines

    secrets = (*INGEST_KEYS, LLM_API_KEY, WORKER_CALLBACK_SECRET, stack.callback_secret)
    logs = sorted((stack.config.run_dir / "logs").glob("*.log"))
    assert {"ingest.log", "worker.log"} <= {path.name for path in logs}
    for path in logs:
        text = path.read_text()
        for secret in secrets:
            assert secret not in text, f"{path.name} shows a secret"

    for service in ("ingest", "worker"):
        lines = _json_lines(stack.config.run_dir / "logs" / f"{service}.log")
        about_request = [line for line in lines if line["requestId"] == REQUEST_ID]
        assert about_request, f"{service}: no line carries requestId"
        assert all(line["memberId"] == 33 for line in about_request)
        assert any(line["trace_id"] for line in about_request), f"{service}: no trace_id"
    worker_lines = _json_lines(stack.config.run_dir / "logs" / "worker.log")
    assert any("HTTP 401" in line["message"] for line in worker_lines)
