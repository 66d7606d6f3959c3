"""Prometheus scrapes ingest's /metrics and the worker's METRICS_PORT; one request moves both."""

import dataclasses
import time

import httpx
import pytest
from devstack.processes import free_port
from llm_common.contracts.example import example_weekly_record

from tests.support.factories import StartStack
from tests.support.scrape import Scrape
from tests.support.stack import free_ports, wait_for_callback

pytestmark = pytest.mark.e2e

REQUEST_ID = "e2e-metrics-1"
DELIVERIES = "feedback_worker_deliveries_total"
TOKENS = "feedback_worker_llm_tokens_total"


def _first_scrape(url: str, timeout: float = 30.0) -> Scrape:
    """The worker has no readiness URL in the stack: its metrics answer once it is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Scrape.of(url)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_one_request_moves_the_ingest_and_worker_counters(start_stack: StartStack) -> None:
    ports = dataclasses.replace(free_ports(), worker_metrics=free_port())
    stack = start_stack(llm="fake", ports=ports)
    ingest_metrics = f"{stack.ingest_url}/metrics"
    # The chart's probes call this path on METRICS_PORT.
    worker_metrics = f"http://127.0.0.1:{ports.worker_metrics}/metrics"
    ingest_before, worker_before = Scrape.of(ingest_metrics), _first_scrape(worker_metrics)
    model = stack.config.llm_model

    body = example_weekly_record(REQUEST_ID, member_id=32)
    assert (
        httpx.post(
            f"{stack.ingest_url}/ai/feedback", json=body, headers=stack.ingest_headers, timeout=10
        ).status_code
        == 202
    )
    wait_for_callback(stack, REQUEST_ID)

    ingest_after, worker_after = Scrape.of(ingest_metrics), Scrape.of(worker_metrics)
    accepted = "feedback_ingest_requests_accepted_total"
    assert ingest_after.value(accepted) == ingest_before.value(accepted) + 1
    for target in ("queue", "callback"):
        labels = {"target": target, "outcome": "delivered"}
        assert (
            worker_after.value(DELIVERIES, **labels)
            == worker_before.value(DELIVERIES, **labels) + 1
        )
    for kind in ("input", "output"):
        assert worker_after.value(TOKENS, model=model, type=kind) > 0
    assert worker_after.value("feedback_worker_queue_wait_seconds_count") == 1
    assert worker_after.value("feedback_worker_messages_in_flight") == 0
    # Every process exposes every family; the worker's own did not appear in ingest's by chance.
    assert "feedback_worker_dlq_sends" in ingest_after.families()
    assert "feedback_ingest_requests_rejected" in worker_after.families()
