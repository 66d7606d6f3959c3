"""The happy path: on moto with both channels, then the feedback handler on an in-memory queue
against the fake LLM and the callback receiver over HTTP."""

import asyncio
import base64
import json

from devstack.queues import FeedbackQueues
from feedback_worker.memory import InMemorySource
from mypy_boto3_sqs import SQSClient

from tests.support.factories import RunFeedback, StartWorker
from tests.support.fakes import CallbackReceiver, SimulatedLlm
from tests.support.queues import backend_message, enqueue, queue_counts, receive_all
from tests.support.records import weekly_record
from tests.support.waiting import eventually


async def test_a_request_is_delivered_to_the_result_queue_and_the_signed_callback(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    llm: SimulatedLlm,
    receiver: CallbackReceiver,
) -> None:
    enqueue(sqs, feedback_queues.requests, member_id=42, request_id="req-42")
    await start_worker(CALLBACK_URL=f"{receiver.url}/", CALLBACK_PATH="/hooks/feedback")

    await eventually(lambda: len(receiver.deliveries()) == 1)
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))

    [result] = receive_all(sqs, feedback_queues.results)
    body = json.loads(result["Body"])
    assert body["memberId"] == 42
    assert body["requestId"] == "req-42"
    assert body["status"] == "success"
    assert "아침 산책 42 (성공)" in body["content"]  # the fake LLM echoes the prompt's lines
    assert body["timestamp"]
    assert result["Attributes"]["MessageGroupId"] == "42"
    assert result["Attributes"]["MessageDeduplicationId"] == "req-42"

    [delivery] = receiver.deliveries()
    assert delivery["path"] == "/hooks/feedback"
    assert delivery["webhook_id"] == "req-42"
    assert delivery["body"] == body
    # The receiver verified the Standard Webhooks signature with the shared secret.
    assert delivery["status"] == 200
    assert delivery["headers"]["webhook-signature"].startswith("v1,")
    assert receiver.bad_signatures() == 0
    assert receive_all(sqs, feedback_queues.dead_letters) == []


async def test_a_callback_signed_with_another_secret_is_refused_and_the_message_kept(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
) -> None:
    enqueue(sqs, feedback_queues.requests, member_id=43, request_id="req-43")
    other_secret = "whsec_" + base64.b64encode(b"another-secret-0123456789abcdefg").decode()
    await start_worker(
        CALLBACK_SECRET=other_secret, RETRY_DELAY_SECONDS="60", RETRY_MAX_DELAY_SECONDS="60"
    )

    await eventually(lambda: receiver.bad_signatures() == 1)
    # Not delivered, so not deleted: it waits for its retry delay.
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 1))
    assert receiver.deliveries() == []


async def test_the_result_queue_can_be_switched_off(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
) -> None:
    enqueue(sqs, feedback_queues.requests, member_id=9, request_id="req-9")
    await start_worker(RESULT_QUEUE_URL="")

    await eventually(lambda: receiver.statuses() == [200])
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))

    assert receive_all(sqs, feedback_queues.results) == []


async def test_the_llm_gets_the_korean_prompt_and_the_call_parameters(
    run_feedback: RunFeedback, source: InMemorySource, llm: SimulatedLlm
) -> None:
    source.send(weekly_record(7, "req-7"), group_id="7")

    await run_feedback(source)

    [request] = llm.requests()
    assert request["model"] == "test-model"
    assert request["temperature"] == 0.7
    assert request["max_tokens"] == 400
    assert request.get("stream", False) is False
    system, user = request["messages"]
    assert system == {"role": "system", "content": "너는 피드백 어시스턴트야."}
    assert "- 아침 산책 7 (성공)" in user["content"]
    group = "- 주 3회 러닝\n  기간: 2025-06-09 ~ 2025-06-15\n  이번 주 성공률: 1/1"
    assert group in user["content"]


async def test_stop_strings_reach_the_llm_only_when_llm_stop_names_them(
    run_feedback: RunFeedback, source: InMemorySource, llm: SimulatedLlm
) -> None:
    source.send(weekly_record(8, "req-8"), group_id="8")
    await run_feedback(source)
    source.send(weekly_record(9, "req-9"), group_id="9")
    await run_feedback(source, LLM_STOP='["[기록]", "[피드백]"]')

    by_default, with_stop = llm.requests()
    assert "stop" not in by_default
    assert with_stop["stop"] == ["[기록]", "[피드백]"]


async def test_messages_the_backend_publishes_itself_are_processed_too(
    run_feedback: RunFeedback, source: InMemorySource, receiver: CallbackReceiver
) -> None:
    # No requestId, one constant MessageGroupId, dedup id memberId-sha256(body).
    dedup_ids = []
    for member_id in (1, 2, 3):
        body, dedup_id = backend_message(member_id)
        source.send(body, group_id="feedback", deduplication_id=dedup_id)
        dedup_ids.append(dedup_id)

    await run_feedback(source)

    assert sorted(d["webhook_id"] for d in receiver.deliveries()) == sorted(dedup_ids)
    assert sorted(d["body"]["requestId"] for d in receiver.deliveries()) == sorted(dedup_ids)
    assert source.counts() == (0, 0)


async def test_in_flight_work_is_bounded_by_the_concurrency_and_fills_it(
    run_feedback: RunFeedback, source: InMemorySource, llm: SimulatedLlm, receiver: CallbackReceiver
) -> None:
    llm.control(latency_s=0.3)
    for member in range(100, 112):
        source.send(weekly_record(member, f"req-{member}"), group_id=str(member))

    await run_feedback(source, WORKER_CONCURRENCY="4", WORKER_PREFETCH="2")

    assert llm.stats()["max_in_flight"] == 4
    assert llm.stats()["requests"] == 12
    assert len(receiver.deliveries()) == 12


async def test_a_slow_callback_does_not_hold_the_next_llm_calls_back(
    run_feedback: RunFeedback, source: InMemorySource, llm: SimulatedLlm, receiver: CallbackReceiver
) -> None:
    receiver.script(delay_s=1.0, times=4)
    for member in range(120, 128):
        source.send(weekly_record(member, f"req-{member}"), group_id=str(member))
    running = asyncio.create_task(run_feedback(source, WORKER_CONCURRENCY="2", WORKER_PREFETCH="0"))

    # Two answers go to delivery and free their LLM slots for two more calls ...
    await eventually(lambda: llm.stats()["requests"] == 4)
    assert receiver.deliveries() == []
    # ... but no more: with both delivery slots taken, the next answers wait where they are.
    await asyncio.sleep(0.5)
    assert llm.stats()["requests"] == 4
    assert source.counts() == (4, 4)

    await running
    assert len(receiver.deliveries()) == 8
    assert llm.stats()["requests"] == 8
