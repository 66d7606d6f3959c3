"""GET /metrics counts what ingest accepted, what it refused and why, and how long SQS took."""

from typing import Any

import httpx
import pytest
from feedback_ingest.settings import IngestSettings

from tests.support.ingest import Serve, assert_envelope
from tests.support.scrape import Scrape

ENQUEUE_COUNT = "feedback_ingest_enqueue_duration_seconds_count"


async def _scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


async def test_an_accepted_request_moves_accepted_and_the_enqueue_latency(
    client: httpx.AsyncClient, record: dict[str, Any]
) -> None:
    before = await _scrape(client)

    assert_envelope(await client.post("/ai/feedback", json=record), 202)

    after = await _scrape(client)
    accepted = "feedback_ingest_requests_accepted_total"
    assert after.value(accepted) == before.value(accepted) + 1
    assert after.value(ENQUEUE_COUNT, outcome="ok") == before.value(ENQUEUE_COUNT, outcome="ok") + 1


@pytest.fixture
def with_api_key(settings: IngestSettings, monkeypatch: pytest.MonkeyPatch) -> IngestSettings:
    monkeypatch.setenv("INGEST_API_KEYS", "the-key")
    return IngestSettings(feedback_queue_url=settings.feedback_queue_url, max_body_bytes=2048)


@pytest.mark.parametrize(
    ("headers", "body", "reason", "status"),
    [
        ({"X-API-Key": "wrong"}, {"memberId": 1}, "unauthorized", 401),
        ({"X-API-Key": "the-key"}, {"memberId": "not a number"}, "invalid_body", 400),
        ({"X-API-Key": "the-key"}, {"memberId": 1, "pad": "x" * 4096}, "too_large", 413),
    ],
)
async def test_a_refused_request_is_counted_by_reason(
    serve: Serve,
    with_api_key: IngestSettings,
    headers: dict[str, str],
    body: dict[str, Any],
    reason: str,
    status: int,
) -> None:
    rejected = "feedback_ingest_requests_rejected_total"
    async with serve(with_api_key) as client:
        before = await _scrape(client)
        assert_envelope(await client.post("/ai/feedback", json=body, headers=headers), status)
        after = await _scrape(client)

    assert after.value(rejected, reason=reason) == before.value(rejected, reason=reason) + 1
    accepted = "feedback_ingest_requests_accepted_total"
    assert after.value(accepted) == before.value(accepted)


async def test_metrics_are_not_part_of_the_api_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "/metrics" not in document["paths"]
