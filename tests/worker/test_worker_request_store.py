"""The worker keeps the request store's record: ingest and a worker on moto's SQS and DynamoDB."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from devstack.queues import FeedbackQueues
from feedback_ingest.app import create_app
from feedback_ingest.settings import IngestSettings

from tests.support.factories import StartWorker
from tests.support.fakes import CallbackReceiver, FakeLlm
from tests.support.ingest import JSON, assert_envelope
from tests.support.records import weekly_record
from tests.support.waiting import eventually


@pytest.fixture
async def ingest(
    feedback_queues: FeedbackQueues, request_table: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        IngestSettings(
            feedback_queue_url=feedback_queues.requests, request_table_name=request_table
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://ingest") as client,
    ):
        yield client


async def _state(ingest: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    return assert_envelope(await ingest.get(f"/ai/feedback/{request_id}"), 200)


async def _wait_for(ingest: httpx.AsyncClient, request_id: str, state: str) -> dict[str, Any]:
    for _ in range(300):
        record = await _state(ingest, request_id)
        if record["state"] == state:
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"{request_id} never {state}: {record}")


async def test_accepted_then_delivered_and_a_late_retry_makes_no_second_llm_call(
    ingest: httpx.AsyncClient,
    start_worker: StartWorker,
    request_table: str,
    llm: FakeLlm,
    receiver: CallbackReceiver,
) -> None:
    body = {**weekly_record(77, "req-life")}
    assert_envelope(await ingest.post("/ai/feedback", json=body, headers=JSON), 202)
    assert (await _state(ingest, "req-life"))["state"] == "accepted"
    await start_worker(REQUEST_TABLE_NAME=request_table, CALLBACK_URL=receiver.url)
    final = await _wait_for(ingest, "req-life", "delivered")
    assert final["attempts"] == 1
    assert final["result"]["content"] == receiver.deliveries()[0]["body"]["content"]
    # After the message was consumed and deleted, SQS no longer deduplicates: the store does.
    assert_envelope(await ingest.post("/ai/feedback", json=body, headers=JSON), 202)
    await eventually(lambda: len(receiver.deliveries()) == 1)
    assert len(llm.requests()) == 1


async def test_a_request_past_its_deadline_never_reaches_the_llm(
    ingest: httpx.AsyncClient,
    start_worker: StartWorker,
    request_table: str,
    llm: FakeLlm,
    receiver: CallbackReceiver,
) -> None:
    body = {**weekly_record(78, "req-old"), "deadline": "2020-01-01T00:00:00"}
    assert_envelope(await ingest.post("/ai/feedback", json=body, headers=JSON), 202)
    await start_worker(REQUEST_TABLE_NAME=request_table, CALLBACK_URL=receiver.url)
    final = await _wait_for(ingest, "req-old", "expired")
    assert "deadline" in final["failureReason"]
    assert llm.requests() == []
    assert receiver.deliveries() == []
