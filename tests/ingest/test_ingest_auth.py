"""API keys: while two are configured (a rotation), either one works; nothing else does; with
none configured the API is closed, not open. The clients here send only what each test gives."""

from typing import Any

import pytest
from devstack.queues import FeedbackQueues
from feedback_ingest.settings import IngestSettings
from llm_common.telemetry.names import RejectReason

from tests.support.ingest import RequestQueue, Serve, assert_envelope
from tests.support.scrape import Scrape


@pytest.fixture
def rotating_keys(
    monkeypatch: pytest.MonkeyPatch, feedback_queues: FeedbackQueues
) -> IngestSettings:
    monkeypatch.setenv("INGEST_API_KEYS", "old-key, new-key")
    return IngestSettings(feedback_queue_url=feedback_queues.requests)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"X-API-Key": ""},
        {"X-API-Key": "old-key-and-more"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic b2xkLWtleQ=="},
        {"Authorization": "old-key"},
        {"X-API-Key": "키".encode()},  # not ASCII: compared as bytes, no TypeError
    ],
)
async def test_without_a_valid_key_the_answer_is_401_and_nothing_is_queued(
    serve: Serve,
    rotating_keys: IngestSettings,
    request_queue: RequestQueue,
    record: dict[str, Any],
    headers: dict[str, str | bytes],
) -> None:
    async with serve(rotating_keys, authenticated=False) as client:
        response = await client.post("/ai/feedback", json=record, headers=headers)

    assert_envelope(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert request_queue.count() == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "old-key"},
        {"X-API-Key": "new-key"},
        {"Authorization": "Bearer old-key"},
        {"Authorization": "bearer new-key"},
    ],
)
async def test_either_rotated_key_is_accepted_in_either_header(
    serve: Serve, rotating_keys: IngestSettings, record: dict[str, Any], headers: dict[str, str]
) -> None:
    async with serve(rotating_keys, authenticated=False) as client:
        response = await client.post("/ai/feedback", json=record, headers=headers)

    assert_envelope(response, 202)


async def test_credentials_are_checked_before_the_body_is_read(
    serve: Serve, rotating_keys: IngestSettings
) -> None:
    async with serve(rotating_keys, authenticated=False) as client:
        response = await client.post("/ai/feedback", content=b"not json")

    assert_envelope(response, 401)


async def test_probes_need_no_key(serve: Serve, rotating_keys: IngestSettings) -> None:
    async with serve(rotating_keys, authenticated=False) as client:
        assert_envelope(await client.get("/healthz"), 200)
        assert_envelope(await client.get("/readyz"), 200)


def test_keys_never_appear_in_the_settings_repr(rotating_keys: IngestSettings) -> None:
    assert len(rotating_keys.ingest_api_keys) == 2
    assert "old-key" not in repr(rotating_keys)
    assert "new-key" not in str(rotating_keys)


def test_no_keys_configured_means_an_empty_list(
    monkeypatch: pytest.MonkeyPatch, feedback_queues: FeedbackQueues
) -> None:
    monkeypatch.setenv("INGEST_API_KEYS", "")
    assert IngestSettings(feedback_queue_url=feedback_queues.requests).ingest_api_keys == []


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "any"}])
async def test_without_configured_keys_both_calls_answer_503_naming_the_setting(
    serve: Serve,
    monkeypatch: pytest.MonkeyPatch,
    feedback_queues: FeedbackQueues,
    request_queue: RequestQueue,
    record: dict[str, Any],
    headers: dict[str, str],
) -> None:
    monkeypatch.setenv("INGEST_API_KEYS", "")
    closed = IngestSettings(feedback_queue_url=feedback_queues.requests)

    async with serve(closed, authenticated=False) as client:
        before = Scrape((await client.get("/metrics")).text)
        posted = await client.post("/ai/feedback", json=record, headers=headers)
        looked_up = await client.get("/ai/feedback/some-request", headers=headers)
        after = Scrape((await client.get("/metrics")).text)

    for answer in (posted, looked_up):
        assert_envelope(answer, 503)
        assert answer.json()["message"] == "INGEST_API_KEYS is not set: this API is closed"
    assert request_queue.count() == 0
    rejected = "feedback_ingest_requests_rejected_total"
    closed_count = {"reason": RejectReason.API_CLOSED.value}
    assert after.value(rejected, **closed_count) == before.value(rejected, **closed_count) + 2
