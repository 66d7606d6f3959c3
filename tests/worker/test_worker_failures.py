"""What happens to a message when the LLM fails, or when the message itself is bad."""

import asyncio
import json

from conftest import StartWorker
from devstack.queues import FeedbackQueues
from mypy_boto3_sqs import SQSClient
from worker_helpers import (
    CallbackReceiver,
    FakeLlm,
    enqueue,
    enqueue_raw,
    eventually,
    feedback_request,
    queue_counts,
    receive_all,
)

# With LLM_GATE_ENABLED=false (today's worker, the burst bench's baseline) the openai client
# retries and every failed call burns a receive; test_worker_llm_gate.py has the gate's side.


async def test_without_the_gate_transient_llm_errors_are_retried_by_the_client(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    llm: FakeLlm,
    receiver: CallbackReceiver,
) -> None:
    llm.control(fail_next=2, fail_status=503)
    enqueue(sqs, feedback_queues.requests, member_id=11, request_id="req-11")
    await start_worker(LLM_MAX_RETRIES="2", LLM_GATE_ENABLED="false")

    await eventually(lambda: receiver.statuses() == [200])

    assert llm.stats() | {"in_flight": 0} == {
        "requests": 3,
        "completions": 1,
        "failures": 2,
        "in_flight": 0,
        "max_in_flight": 1,
    }
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))


async def test_without_the_gate_a_429_with_retry_after_is_retried_by_the_client(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    llm: FakeLlm,
    receiver: CallbackReceiver,
) -> None:
    llm.control(fail_next=1, fail_status=429, retry_after="1")
    enqueue(sqs, feedback_queues.requests, member_id=12, request_id="req-12")
    await start_worker(LLM_MAX_RETRIES="1", LLM_GATE_ENABLED="false")

    await eventually(lambda: receiver.statuses() == [200])
    assert llm.stats()["requests"] == 2


async def test_an_empty_answer_is_a_failure_and_the_message_is_retried(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    llm: FakeLlm,
    receiver: CallbackReceiver,
) -> None:
    llm.control(empty_next=1)
    enqueue(sqs, feedback_queues.requests, member_id=13, request_id="req-13")
    await start_worker()

    # Nothing without content reaches the backend; the next receive gets a real answer.
    await eventually(lambda: receiver.statuses() == [200])
    assert receiver.deliveries()[0]["body"]["content"]
    assert llm.stats()["completions"] == 2


async def test_without_the_gate_an_llm_down_burns_receives_until_the_dlq(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    llm: FakeLlm,
    receiver: CallbackReceiver,
) -> None:
    llm.control(refuse=True, fail_status=503)
    enqueue(sqs, feedback_queues.requests, member_id=14, request_id="req-14")
    await start_worker(
        LLM_MAX_RETRIES="0",
        LLM_GATE_ENABLED="false",
        RETRY_DELAY_SECONDS="1",
        RETRY_MAX_DELAY_SECONDS="1",
    )

    # The fixture's queue has maxReceiveCount=3: after the third try the worker moves it to the
    # DLQ itself, with the reason (SQS's own redrive would move it without one).
    await eventually(lambda: queue_counts(sqs, feedback_queues.dead_letters)[0] == 1)

    assert llm.stats()["requests"] == 3
    [dead] = receive_all(sqs, feedback_queues.dead_letters)
    assert json.loads(dead["Body"])["requestId"] == "req-14"
    reason = dead["MessageAttributes"]["DeadLetterReason"]["StringValue"]
    assert reason.startswith("gave up after 3 receives: LLM call failed: HTTP 503")
    assert queue_counts(sqs, feedback_queues.requests) == (0, 0)
    assert receiver.deliveries() == []


async def test_without_the_gate_a_failing_llm_returns_the_message_with_a_delay(
    start_worker: StartWorker, sqs: SQSClient, feedback_queues: FeedbackQueues, llm: FakeLlm
) -> None:
    llm.control(refuse=True, fail_status=503)
    enqueue(sqs, feedback_queues.requests, member_id=15, request_id="req-15")
    worker = await start_worker(
        LLM_MAX_RETRIES="0",
        LLM_GATE_ENABLED="false",
        VISIBILITY_TIMEOUT_SECONDS="2",
        RETRY_DELAY_SECONDS="60",
        RETRY_MAX_DELAY_SECONDS="60",
    )
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 1))
    await asyncio.sleep(1)  # the failure is settled: the message was received once
    worker.stop()

    # Longer than the visibility timeout, far shorter than the retry delay: still hidden.
    assert receive_all(sqs, feedback_queues.requests, wait_s=4) == []
    assert queue_counts(sqs, feedback_queues.requests) == (0, 1)


async def test_a_poison_message_goes_to_the_dlq_at_once_with_its_reason(
    start_worker: StartWorker, sqs: SQSClient, feedback_queues: FeedbackQueues, llm: FakeLlm
) -> None:
    not_json = enqueue_raw(sqs, feedback_queues.requests, "{not json", group="1")
    no_member = feedback_request(2) | {"memberId": None}
    invalid = enqueue_raw(sqs, feedback_queues.requests, json.dumps(no_member), group="2")
    await start_worker()

    await eventually(lambda: queue_counts(sqs, feedback_queues.dead_letters)[0] == 2)

    dead = {
        m["MessageAttributes"]["DeadLetterSourceMessageId"]["StringValue"]: m
        for m in receive_all(sqs, feedback_queues.dead_letters)
    }
    assert dead[not_json]["Body"] == "{not json"
    assert "Invalid JSON" in dead[not_json]["MessageAttributes"]["DeadLetterReason"]["StringValue"]
    assert "memberId" in dead[invalid]["MessageAttributes"]["DeadLetterReason"]["StringValue"]
    assert dead[invalid]["Attributes"]["MessageGroupId"] == "2"
    # Received once, never retried: the source queue is empty and the LLM was never asked.
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))
    assert llm.stats()["requests"] == 0
