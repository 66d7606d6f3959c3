"""The worker keeps the request store's record: ingest and a worker on moto's SQS and DynamoDB,
and the feedback handler on an in-memory queue with the store in moto."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from devstack.queues import FeedbackQueues
from feedback_ingest.app import create_app
from feedback_ingest.settings import IngestSettings
from feedback_worker.memory import InMemorySource
from llm_common.requests_store import RequestState, RequestStore

from tests.support.clock import SimulatedClock
from tests.support.factories import RunFeedback, StartWorker
from tests.support.fakes import CallbackReceiver, FakeLlm
from tests.support.ingest import JSON, assert_envelope
from tests.support.records import weekly_record
from tests.support.waiting import eventually

DEADLINE = datetime.now(UTC) + timedelta(days=7)
HOUR = 3600.0


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


@pytest.fixture
def store(request_table: str) -> RequestStore:
    return RequestStore(request_table, "us-east-1")


async def _state(ingest: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    return assert_envelope(await ingest.get(f"/ai/feedback/{request_id}"), 200)


async def _wait_for(ingest: httpx.AsyncClient, request_id: str, state: str) -> dict[str, Any]:
    for _ in range(300):
        record = await _state(ingest, request_id)
        if record["state"] == state:
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"{request_id} never {state}: {record}")


def send(source: InMemorySource, member_id: int) -> str:
    return source.send(weekly_record(member_id, f"req-{member_id}"), group_id=str(member_id))


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


async def test_a_permanent_refusal_ends_failed_with_a_notice_on_the_failure_path_only(
    run_feedback: RunFeedback,
    source: InMemorySource,
    store: RequestStore,
    request_table: str,
    receiver: CallbackReceiver,
) -> None:
    store.accept("req-41", 41, DEADLINE)
    receiver.script(status=404)
    send(source, 41)

    await run_feedback(
        source,
        REQUEST_TABLE_NAME=request_table,
        CALLBACK_PATH="/feedback",
        CALLBACK_FAILURE_PATH="/feedback-failures",
    )

    record = store.get("req-41")
    assert record is not None
    assert record.state is RequestState.FAILED
    assert record.failure_reason == "callback rejected the result: HTTP 404: "
    result, notice = receiver.deliveries()
    assert (result["path"], result["status"]) == ("/feedback", 404)
    assert notice["path"] == "/feedback-failures"
    assert notice["webhook_id"] == "req-41"
    assert notice["body"] == {
        "requestId": "req-41",
        "memberId": 41,
        "state": "failed",
        "reason": "callback rejected the result: HTTP 404: ",
        "timestamp": notice["body"]["timestamp"],
    }
    assert "content" not in notice["body"]


async def test_without_a_failure_path_no_notice_is_sent(
    run_feedback: RunFeedback, source: InMemorySource, receiver: CallbackReceiver
) -> None:
    receiver.script(status=400)
    send(source, 42)

    await run_feedback(source)

    assert [d["status"] for d in receiver.deliveries()] == [400]


async def test_a_receiver_down_for_an_hour_gets_the_result_after_with_one_llm_call(
    run_feedback: RunFeedback,
    source: InMemorySource,
    store: RequestStore,
    request_table: str,
    llm: FakeLlm,
    receiver: CallbackReceiver,
) -> None:
    store.accept("req-43", 43, DEADLINE)
    receiver.script(status=503, times=10_000)
    clock = SimulatedClock()
    clock.at(HOUR, receiver.reset)  # the backend's deploy is over: it answers again
    message_id = send(source, 43)

    await run_feedback(
        source, clock=clock, REQUEST_TABLE_NAME=request_table, CALLBACK_MAX_ATTEMPTS="1"
    )

    assert clock.elapsed >= HOUR
    assert source.deleted == [message_id]
    assert source.receives == 1  # held all along: no receive spent
    assert llm.stats()["requests"] == 1
    [delivered] = receiver.deliveries()
    record = store.get("req-43")
    assert record is not None
    assert record.state is RequestState.DELIVERED
    assert record.content == delivered["body"]["content"]
    assert max(clock.sleeps) <= 60  # DELIVERY_RETRY_MAX_DELAY_SECONDS: back soon after


async def test_a_receiver_down_past_the_delivery_budget_ends_failed_with_the_reason(
    run_feedback: RunFeedback,
    source: InMemorySource,
    store: RequestStore,
    request_table: str,
    llm: FakeLlm,
    receiver: CallbackReceiver,
) -> None:
    store.accept("req-44", 44, DEADLINE)
    receiver.script(status=503, times=10_000)
    clock = SimulatedClock()
    send(source, 44)

    await run_feedback(
        source,
        clock=clock,
        REQUEST_TABLE_NAME=request_table,
        DELIVERY_RETRY_SECONDS="600",
        CALLBACK_MAX_ATTEMPTS="1",
    )

    [dead] = source.dead_letters
    assert (dead.reason or "").startswith("undelivered 600s after it was generated: callback")
    record = store.get("req-44")
    assert record is not None
    assert (record.state, record.failure_reason) == (RequestState.FAILED, dead.reason)
    assert record.content is not None  # kept: `admin redeliver` can send it later
    assert 600 <= clock.elapsed < 700
    assert llm.stats()["requests"] == 1


async def test_a_message_back_after_its_result_was_stored_sends_that_result_without_the_llm(
    run_feedback: RunFeedback,
    source: InMemorySource,
    store: RequestStore,
    request_table: str,
    llm: FakeLlm,
    receiver: CallbackReceiver,
) -> None:
    store.accept("req-45", 45, DEADLINE)
    store.store_result("req-45", "지난번에 써 둔 피드백이에요. 이번 주도 수고 많았어요!", receive=1)
    send(source, 45)
    # The worker that stored it died before delivering: its receive counted, the message is back.
    await source.receive(1, 0, 0)

    await run_feedback(source, REQUEST_TABLE_NAME=request_table)

    assert llm.stats()["requests"] == 0
    [delivery] = receiver.deliveries()
    assert delivery["body"]["content"] == "지난번에 써 둔 피드백이에요. 이번 주도 수고 많았어요!"
    record = store.get("req-45")
    assert record is not None
    assert (record.state, record.attempts) == (RequestState.DELIVERED, 2)


async def test_a_copy_of_a_delivered_request_is_deleted_without_work(
    run_feedback: RunFeedback,
    source: InMemorySource,
    store: RequestStore,
    request_table: str,
    llm: FakeLlm,
    receiver: CallbackReceiver,
) -> None:
    store.accept("req-46", 46, DEADLINE)
    store.store_result("req-46", "이미 전달된 피드백이에요. 다음 주도 응원할게요!", receive=1)
    store.mark_delivered("req-46", ["callback"], "delivered")
    message_id = send(source, 46)
    await source.receive(1, 0, 0)

    await run_feedback(source, REQUEST_TABLE_NAME=request_table)

    assert source.deleted == [message_id]
    assert llm.stats()["requests"] == 0
    assert receiver.deliveries() == []


async def test_an_llm_failing_on_every_receive_ends_failed_with_why(
    run_feedback: RunFeedback,
    source: InMemorySource,
    store: RequestStore,
    request_table: str,
    llm: FakeLlm,
) -> None:
    store.accept("req-47", 47, DEADLINE)
    llm.control(refuse=True, fail_status=503)
    send(source, 47)

    for _ in range(3):  # the in-memory queue allows 3 receives
        await run_feedback(source, REQUEST_TABLE_NAME=request_table, LLM_MAX_RETRIES="0")
        source.advance(60)

    record = store.get("req-47")
    assert record is not None
    assert record.state is RequestState.FAILED
    assert record.failure_reason == "gave up after 3 receives: LLM call failed: HTTP 503"
    assert record.attempts == 3
