"""Ingest with its request store: moto's SQS and DynamoDB over HTTP."""

import string
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from devstack.queues import FeedbackQueues
from feedback_ingest.settings import IngestSettings
from llm_common.contracts import RESENT_ATTRIBUTE
from pydantic import ValidationError

from tests.support.ingest import JSON, RequestQueue, Serve, assert_envelope, error_fields


@pytest.fixture
def settings(feedback_queues: FeedbackQueues, request_table: str) -> IngestSettings:
    return IngestSettings(
        feedback_queue_url=feedback_queues.requests, request_table_name=request_table
    )


async def test_a_retry_after_the_message_was_consumed_makes_no_second_job(
    client: httpx.AsyncClient, record: dict[str, Any], request_queue: RequestQueue
) -> None:
    body = {**record, "requestId": "weekly-2025-06-16"}
    first = await client.post("/ai/feedback", json=body, headers=JSON)
    assert assert_envelope(first, 202) == {"requestId": "weekly-2025-06-16"}
    # A worker takes the message and deletes it: SQS's deduplication no longer has it to compare.
    request_queue.receive_and_delete()
    retry = await client.post("/ai/feedback", json=body, headers=JSON)
    assert assert_envelope(retry, 202) == {"requestId": "weekly-2025-06-16"}
    assert request_queue.count() == 0


async def test_a_request_id_used_by_another_member_is_a_409_and_not_queued(
    client: httpx.AsyncClient, record: dict[str, Any], request_queue: RequestQueue
) -> None:
    first = {**record, "memberId": 1001, "requestId": "weekly-2025-06-16"}
    second = {**record, "memberId": 2002, "requestId": "weekly-2025-06-16"}
    assert_envelope(await client.post("/ai/feedback", json=first, headers=JSON), 202)
    conflict = await client.post("/ai/feedback", json=second, headers=JSON)
    assert assert_envelope(conflict, 409) == {"requestId": "weekly-2025-06-16"}
    assert request_queue.receive_one().body["memberId"] == 1001


async def test_the_store_unreachable_is_a_503_and_nothing_is_queued(
    serve: Serve,
    feedback_queues: FeedbackQueues,
    record: dict[str, Any],
    request_queue: RequestQueue,
) -> None:
    settings = IngestSettings(
        feedback_queue_url=feedback_queues.requests, request_table_name="no-such-table"
    )
    async with serve(settings) as client:
        response = await client.post("/ai/feedback", json=record, headers=JSON)
    assert_envelope(response, 503)
    assert response.headers["Retry-After"] == "5"
    assert request_queue.count() == 0


async def test_get_shows_an_accepted_request_and_404_for_an_unknown_one(
    client: httpx.AsyncClient, record: dict[str, Any]
) -> None:
    body = {**record, "requestId": "r-1", "deadline": [2030, 1, 1, 0, 0]}
    assert_envelope(await client.post("/ai/feedback", json=body, headers=JSON), 202)
    status = assert_envelope(await client.get("/ai/feedback/r-1"), 200)
    assert status["state"] == "accepted"
    assert status["memberId"] == record["memberId"]
    assert status["deadline"] == "2030-01-01T00:00:00+00:00"
    assert set(status["times"]) == {"acceptedAt", "enqueuedAt"}
    assert "result" not in status
    assert_envelope(await client.get("/ai/feedback/unknown"), 404)


# Every printable ASCII character that is not a letter or a digit, alone and inside an id; the
# dot segments; the id; the longest id.
CANDIDATE_IDS = [
    *string.punctuation,
    *(f"w{c}24" for c in string.punctuation),
    "..",
    "team/7/week-24",
    "A" * 128,
]


@pytest.mark.parametrize("sent_as", ["requestId", "Idempotency-Key"])
async def test_every_request_id_the_ingest_accepts_can_be_looked_up(
    client: httpx.AsyncClient, record: dict[str, Any], sent_as: str
) -> None:
    """An id is refused with 400 naming where it was sent, or accepted and found by GET, built
    the way a careful client builds it: every reserved character percent-encoded."""
    accepted: list[str] = []
    lost: list[str] = []
    for request_id in CANDIDATE_IDS:
        if sent_as == "requestId":
            answer = await client.post("/ai/feedback", json={**record, "requestId": request_id})
        else:
            answer = await client.post(
                "/ai/feedback", json=record, headers={"Idempotency-Key": request_id}
            )
        if answer.status_code == 400:
            assert error_fields(answer) == [sent_as], request_id
            continue
        assert assert_envelope(answer, 202) == {"requestId": request_id}
        accepted.append(request_id)
        found = await client.get(f"/ai/feedback/{quote(request_id, safe='')}")
        if found.status_code != 200 or found.json()["data"]["requestId"] != request_id:
            lost.append(request_id)

    assert lost == []
    assert {"w-24", "w.24", "w_24", "w~24", "A" * 128} <= set(accepted)


async def test_a_request_id_with_a_slash_is_refused_and_nothing_is_queued(
    client: httpx.AsyncClient, record: dict[str, Any], request_queue: RequestQueue
) -> None:
    body = {**record, "requestId": "team/7/week-24"}
    response = await client.post("/ai/feedback", json=body, headers=JSON)
    data = assert_envelope(response, 400)
    [error] = data["errors"]
    assert error["field"] == "requestId"
    assert "pattern" in error["message"]
    assert request_queue.count() == 0


async def test_a_retry_after_a_refused_send_sends_again_flagged_for_the_worker(
    serve: Serve,
    feedback_queues: FeedbackQueues,
    request_table: str,
    aws_env: str,
    record: dict[str, Any],
    request_queue: RequestQueue,
) -> None:
    body = {**record, "requestId": "weekly-retry"}
    # The record is written, then SQS refuses the message (here: no such queue): 503.
    gone = IngestSettings(
        feedback_queue_url=f"{aws_env}/123456789012/gone.fifo", request_table_name=request_table
    )
    async with serve(gone) as client:
        assert_envelope(await client.post("/ai/feedback", json=body, headers=JSON), 503)
    settings = IngestSettings(
        feedback_queue_url=feedback_queues.requests, request_table_name=request_table
    )
    async with serve(settings) as client:
        retry = await client.post("/ai/feedback", json=body, headers=JSON)
        status = assert_envelope(await client.get("/ai/feedback/weekly-retry"), 200)

    assert assert_envelope(retry, 202) == {"requestId": "weekly-retry"}
    [message] = request_queue.sqs.receive_message(
        QueueUrl=request_queue.url, MessageAttributeNames=["All"]
    )["Messages"]
    assert message["MessageAttributes"][RESENT_ATTRIBUTE]["StringValue"] == "1"
    assert "enqueuedAt" in status["times"]


async def test_readyz_checks_the_store_too(
    serve: Serve, feedback_queues: FeedbackQueues, request_table: str
) -> None:
    good = IngestSettings(
        feedback_queue_url=feedback_queues.requests, request_table_name=request_table
    )
    missing = IngestSettings(
        feedback_queue_url=feedback_queues.requests, request_table_name="no-such-table"
    )
    async with serve(good) as client:
        ready = await client.get("/readyz")
    async with serve(missing) as client:
        not_ready = await client.get("/readyz")

    assert assert_envelope(ready, 200) == {"queue": "reachable", "store": "reachable"}
    assert assert_envelope(not_ready, 503) == {"queue": "reachable", "store": "unreachable"}


def test_records_that_would_expire_before_their_deadline_are_refused() -> None:
    with pytest.raises(ValidationError, match="REQUEST_STORE_TTL_SECONDS"):
        IngestSettings(
            feedback_queue_url="q",
            request_table_name="t",
            request_ttl_seconds=7 * 24 * 3600,
            request_store_ttl_seconds=24 * 3600,
        )


async def test_get_takes_the_same_api_key_as_post(
    serve: Serve,
    feedback_queues: FeedbackQueues,
    request_table: str,
    record: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INGEST_API_KEYS", "the-key")
    settings = IngestSettings(
        feedback_queue_url=feedback_queues.requests, request_table_name=request_table
    )
    key = {"X-API-Key": "the-key"}
    async with serve(settings) as client:
        body = {**record, "requestId": "keyed-1"}
        assert_envelope(await client.post("/ai/feedback", json=body, headers=JSON | key), 202)
        without = await client.get("/ai/feedback/keyed-1")
        with_key = await client.get("/ai/feedback/keyed-1", headers=key)

    assert_envelope(without, 401)
    assert assert_envelope(with_key, 200)["state"] == "accepted"
