"""Every metric the platform promises is on /metrics, served both ways, and moves with work."""

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from llm_common.telemetry import metrics, start_metrics_server
from llm_common.telemetry.names import DeliveryOutcome, DeliveryTarget, RejectReason
from llm_common.telemetry.web import mount_metrics
from prometheus_client.parser import text_string_to_metric_families

# The names dashboards and alerts use (docs/observability.md): a rename must fail here first.
PROMISED = {
    "feedback_ingest_requests_accepted": "counter",
    "feedback_ingest_requests_rejected": "counter",
    "feedback_ingest_enqueue_duration_seconds": "histogram",
    "feedback_worker_queue_wait_seconds": "histogram",
    "feedback_worker_messages_in_flight": "gauge",
    "feedback_worker_llm_duration_seconds": "histogram",
    "feedback_worker_llm_tokens": "counter",
    "feedback_worker_llm_attempts": "counter",
    "feedback_worker_retries": "counter",
    "feedback_worker_deliveries": "counter",
    "feedback_worker_dlq_sends": "counter",
    "feedback_worker_skipped": "counter",
    "feedback_worker_content_checks": "counter",
    "feedback_worker_drains": "counter",
    # The LLM gate; an alert is written against feedback_worker_llm_gate_open == 0.
    "feedback_worker_llm_gate_open": "gauge",
    "feedback_worker_llm_limit": "gauge",
    "feedback_worker_llm_gate_closed_seconds": "counter",
    "qa_sync_jobs": "gauge",
    "qa_sync_verification_failures": "counter",
    "qa_sync_repairs": "counter",
    "qa_sync_repair_failures": "counter",
}


def _families(exposition: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(exposition)}


def _sample(exposition: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


@pytest.fixture
def worker_metrics_url() -> Iterator[str]:
    server = start_metrics_server(0, host="127.0.0.1")
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()


@pytest.fixture
def app_client() -> TestClient:
    app = FastAPI()
    mount_metrics(app)
    return TestClient(app)


def test_the_metrics_server_exposes_every_promised_metric(worker_metrics_url: str) -> None:
    families = _families(httpx.get(worker_metrics_url).text)

    assert {name: families.get(name) for name in PROMISED} == PROMISED
    assert "process_resident_memory_bytes" in families


def test_an_app_serves_metrics_at_exactly_slash_metrics(app_client: TestClient) -> None:
    response = app_client.get("/metrics", follow_redirects=False)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert {name: _families(response.text).get(name) for name in PROMISED} == PROMISED
    assert "/metrics" not in app_client.get("/openapi.json").text


def test_fixed_label_values_exist_before_the_first_event(app_client: TestClient) -> None:
    exposition = app_client.get("/metrics").text

    for reason in RejectReason:
        labels = {"reason": reason.value}
        assert _sample(exposition, "feedback_ingest_requests_rejected_total", labels) is not None
    delivery = {"target": "callback", "outcome": "permanent_failure"}
    assert _sample(exposition, "feedback_worker_deliveries_total", delivery) is not None


def test_counted_work_shows_on_the_next_scrape(worker_metrics_url: str) -> None:
    rejected = {"reason": "too_large"}
    delivered = {"target": "queue", "outcome": "delivered"}
    before = httpx.get(worker_metrics_url).text

    metrics.INGEST_REQUESTS_REJECTED.labels(RejectReason.TOO_LARGE).inc()
    metrics.WORKER_DELIVERIES.labels(DeliveryTarget.QUEUE, DeliveryOutcome.DELIVERED).inc()
    metrics.WORKER_QUEUE_WAIT.observe(42.0)
    with metrics.WORKER_MESSAGES_IN_FLIGHT.track_inprogress():
        during = httpx.get(worker_metrics_url).text
    after = httpx.get(worker_metrics_url).text

    def moved(name: str, labels: dict[str, str]) -> float:
        return (_sample(after, name, labels) or 0) - (_sample(before, name, labels) or 0)

    assert moved("feedback_ingest_requests_rejected_total", rejected) == 1
    assert moved("feedback_worker_deliveries_total", delivered) == 1
    assert moved("feedback_worker_queue_wait_seconds_count", {}) == 1
    assert moved("feedback_worker_queue_wait_seconds_bucket", {"le": "30.0"}) == 0
    assert moved("feedback_worker_queue_wait_seconds_bucket", {"le": "60.0"}) == 1
    assert _sample(during, "feedback_worker_messages_in_flight", {}) == 1
    assert _sample(after, "feedback_worker_messages_in_flight", {}) == 0


def test_importing_the_metrics_module_again_does_not_fail() -> None:
    # A reload defines every metric a second time: in prometheus-client's global registry that
    # raises "Duplicated timeseries". Run in a child so this process keeps one set of objects.
    code = "import importlib, llm_common.telemetry.metrics as m; importlib.reload(m)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
