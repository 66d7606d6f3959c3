"""The reliability suite's fixtures: figures for the report, and the platform as real processes
(moto, fake LLM, callback receiver, ingest, worker) with every secret configured, whose logs
are searched for those secrets when the test ends."""

import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devstack.stack import Stack, StackConfig

from tests.support.reliability import (
    Figures,
    Platform,
    StartPlatform,
    configured_secrets,
    scan_log_dir,
)
from tests.support.reliability_report import REPORT_DIR_ENV
from tests.support.stack import free_ports

ROOT = Path(__file__).resolve().parents[2]
OUTCOME = pytest.StashKey[str]()

FAST_WORKER_ENV = {
    # Short waits and delays: the behaviour is the point, not production's wall time.
    "SQS_WAIT_SECONDS": "1",
    "VISIBILITY_TIMEOUT_SECONDS": "5",
    "RETRY_DELAY_SECONDS": "1",
    "RETRY_MAX_DELAY_SECONDS": "4",
    "LLM_MAX_RETRIES": "1",
    "LLM_TIMEOUT_SECONDS": "5",
    "CALLBACK_TIMEOUT_SECONDS": "2",
    "CALLBACK_MAX_ATTEMPTS": "4",
    "DRAIN_GRACE_SECONDS": "10",
    "WORKER_CONCURRENCY": "8",
    # Several workers run side by side: none takes a fixed metrics port.
    "METRICS_PORT": "0",
}


def report_dir() -> Path:
    configured = os.environ.get(REPORT_DIR_ENV)
    return Path(configured) if configured else ROOT / ".run" / "reliability"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" or report.failed:
        item.stash[OUTCOME] = report.outcome
    return report


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """This test's figures; written (with its outcome) to RELIABILITY_REPORT_DIR at the end."""
    doc = (request.function.__doc__ or request.node.name).strip()
    figures = Figures(
        scenario=request.module.SCENARIO, check=" ".join(doc.split("\n\n")[0].split())
    )
    yield figures
    directory = report_dir()
    directory.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("/")[-1])
    record = {
        "scenario": figures.scenario,
        "check": figures.check,
        "outcome": request.node.stash.get(OUTCOME, "error"),
        "figures": figures.values,
        "log_scan": dict(figures.log_scan),
    }
    (directory / f"{name}.json").write_text(json.dumps(record, ensure_ascii=False, indent=2))


@pytest.fixture
def start_platform(tmp_path: Path, figures: Figures) -> Iterator[StartPlatform]:
    """Start the platform with the fake LLM, an API key on ingest and an LLM API key on the
    worker; `worker_env`/`ingest_env` add to the suite's fast settings. Stopped after the test,
    then every log line it wrote is searched for every configured secret."""
    started: list[tuple[Stack, list[str]]] = []

    def start(
        worker_env: dict[str, str] | None = None, ingest_env: dict[str, str] | None = None
    ) -> Platform:
        api_key = secrets.token_urlsafe(24)
        worker = {**FAST_WORKER_ENV, "LLM_API_KEY": secrets.token_urlsafe(24), **(worker_env or {})}
        ingest = {"INGEST_API_KEYS": api_key, **(ingest_env or {})}
        stack = Stack(
            StackConfig(
                run_dir=tmp_path / f"stack{len(started)}",
                ports=free_ports(),
                llm="fake",
                llm_model="fake-llm",
                worker_env=worker,
                ingest_env=ingest,
                with_qa_sync=False,
            )
        )
        started.append((stack, [stack.callback_secret, *configured_secrets({**worker, **ingest})]))
        stack.start()
        return Platform(stack, api_key)

    yield start
    leaks: list[str] = []
    for stack, configured in started:
        stack.stop()
        leaks += scan_log_dir(figures, stack.config.run_dir, configured)
    assert not leaks, f"configured secrets found in the logs: {leaks[:5]}"
