"""DELETE /ai/feedback/{requestId}: ingest with its request store, moto's SQS and DynamoDB over
HTTP. The worker's side of the race (a cancel while it holds the message) is in
tests/worker/test_worker_request_store.py; the whole path in
tests/e2e/test_e2e_request_lifecycle.py."""

from typing import Any

import httpx
import pytest
from devstack.queues import FeedbackQueues
from feedback_ingest.settings import IngestSettings
from llm_common.requests_store import RequestStore

from tests.support.ingest import JSON, RequestQueue, Serve, assert_envelope


@pytest.fixture
def settings(feedback_queues: FeedbackQueues, request_table: str) -> IngestSettings:
    return IngestSettings(
        feedback_queue_url=feedback_queues.requests, request_table_name=request_table
    )


@pytest.fixture
def store(request_table: str) -> RequestStore:
    """The store as the worker writes it."""
    return RequestStore(request_table, "us-east-1")


async def _accepted(client: httpx.AsyncClient, record: dict[str, Any], request_id: str) -> None:
    body = {**record, "requestId": request_id}
    assert_envelope(await client.post("/ai/feedback", json=body, headers=JSON), 202)


async def test_a_queued_request_is_cancelled_and_its_status_says_so(
    client: httpx.AsyncClient, record: dict[str, Any]
) -> None:
    await _accepted(client, record, "weekly-c1")

    answer = await client.delete("/ai/feedback/weekly-c1")

    cancelled = assert_envelope(answer, 200)
    assert answer.json()["message"] == "cancelled"
    assert (cancelled["requestId"], cancelled["state"]) == ("weekly-c1", "cancelled")
    assert set(cancelled["times"]) == {"acceptedAt", "enqueuedAt", "cancelledAt"}
    assert assert_envelope(await client.get("/ai/feedback/weekly-c1"), 200) == cancelled


async def test_a_second_cancel_answers_the_same(
    client: httpx.AsyncClient, record: dict[str, Any]
) -> None:
    await _accepted(client, record, "weekly-c2")
    first = assert_envelope(await client.delete("/ai/feedback/weekly-c2"), 200)

    second = assert_envelope(await client.delete("/ai/feedback/weekly-c2"), 200)

    assert second == first  # the same `cancelledAt`: nothing was written again


async def test_a_retry_of_a_cancelled_request_does_not_bring_it_back(
    client: httpx.AsyncClient, record: dict[str, Any], request_queue: RequestQueue
) -> None:
    await _accepted(client, record, "weekly-c6")
    assert_envelope(await client.delete("/ai/feedback/weekly-c6"), 200)
    # A worker takes the message and deletes it unworked: SQS's deduplication has nothing left.
    request_queue.receive_and_delete()

    await _accepted(client, record, "weekly-c6")

    assert request_queue.count() == 0
    assert assert_envelope(await client.get("/ai/feedback/weekly-c6"), 200)["state"] == "cancelled"


async def test_an_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    answer = await client.delete("/ai/feedback/never-sent")

    assert assert_envelope(answer, 404) == {"requestId": "never-sent"}
    assert_envelope(await client.get("/ai/feedback/never-sent"), 404)


@pytest.mark.parametrize("reached", ["generating", "delivered"])
async def test_a_request_the_llm_has_or_delivered_is_409_with_its_state(
    client: httpx.AsyncClient, record: dict[str, Any], store: RequestStore, reached: str
) -> None:
    await _accepted(client, record, "weekly-c3")
    store.start_generating("weekly-c3", receive=1)
    if reached == "delivered":
        store.store_result("weekly-c3", "이번 주도 잘했어요!", receive=1)
        store.mark_delivered("weekly-c3", ["callback"], "delivered", missing=[])

    answer = await client.delete("/ai/feedback/weekly-c3")

    status = assert_envelope(answer, 409)
    assert status["state"] == reached
    assert answer.json()["message"] == f"request is {reached}: too late to cancel"
    assert assert_envelope(await client.get("/ai/feedback/weekly-c3"), 200)["state"] == reached


async def test_cancel_takes_the_same_api_key_as_post(
    serve: Serve, settings: IngestSettings, record: dict[str, Any]
) -> None:
    key = {"X-API-Key": settings.ingest_api_keys[0].get_secret_value()}
    async with serve(settings, authenticated=False) as client:
        body = {**record, "requestId": "keyed-c1"}
        assert_envelope(await client.post("/ai/feedback", json=body, headers=JSON | key), 202)
        without = await client.delete("/ai/feedback/keyed-c1")
        still = await client.get("/ai/feedback/keyed-c1", headers=key)
        with_key = await client.delete("/ai/feedback/keyed-c1", headers=key)

    assert_envelope(without, 401)
    assert assert_envelope(still, 200)["state"] == "accepted"
    assert assert_envelope(with_key, 200)["state"] == "cancelled"


async def test_without_a_request_store_cancel_is_404_as_the_status_lookup_is(
    serve: Serve, feedback_queues: FeedbackQueues
) -> None:
    async with serve(IngestSettings(feedback_queue_url=feedback_queues.requests)) as client:
        cancel = await client.delete("/ai/feedback/weekly-c4")
        lookup = await client.get("/ai/feedback/weekly-c4")

    assert assert_envelope(cancel, 404) == {"requestId": "weekly-c4"}
    assert cancel.json() == lookup.json()


async def test_a_store_that_does_not_answer_is_503_with_retry_after(
    serve: Serve, feedback_queues: FeedbackQueues
) -> None:
    settings = IngestSettings(
        feedback_queue_url=feedback_queues.requests, request_table_name="no-such-table"
    )
    async with serve(settings) as client:
        answer = await client.delete("/ai/feedback/weekly-c5")

    assert_envelope(answer, 503)
    assert answer.headers["Retry-After"] == "5"
