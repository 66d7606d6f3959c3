"""How the worker reads the callback's answers (docs/backend-contract.md, Callback)."""

import json

import pytest
from conftest import StartWorker
from devstack.queues import FeedbackQueues
from mypy_boto3_sqs import SQSClient
from worker_helpers import CallbackReceiver, FakeLlm, enqueue, eventually, queue_counts, receive_all


async def test_409_already_stored_counts_as_delivered(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
) -> None:
    receiver.script(status=409)
    enqueue(sqs, feedback_queues.requests, member_id=21, request_id="req-21")
    await start_worker()

    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))

    assert receiver.statuses() == [409]
    assert receive_all(sqs, feedback_queues.dead_letters) == []


@pytest.mark.parametrize("status", [400, 404])
async def test_400_and_404_are_permanent_not_retried_and_recorded_in_the_dlq(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
    llm: FakeLlm,
    status: int,
) -> None:
    receiver.script(status=status, times=5)
    enqueue(sqs, feedback_queues.requests, member_id=22, request_id="req-22")
    await start_worker()

    await eventually(lambda: queue_counts(sqs, feedback_queues.dead_letters)[0] == 1)

    assert receiver.statuses() == [status]
    [dead] = receive_all(sqs, feedback_queues.dead_letters)
    assert json.loads(dead["Body"])["requestId"] == "req-22"
    assert f"HTTP {status}" in dead["MessageAttributes"]["DeadLetterReason"]["StringValue"]
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))
    assert llm.stats()["requests"] == 1


async def test_429_with_retry_after_is_retried_until_delivered(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
    llm: FakeLlm,
) -> None:
    receiver.script(status=429, times=2, retry_after="1")
    enqueue(sqs, feedback_queues.requests, member_id=23, request_id="req-23")
    await start_worker()

    await eventually(lambda: receiver.statuses() == [429, 429, 200])
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))
    assert llm.stats()["requests"] == 1  # retried within the message, not re-generated


async def test_a_callback_that_times_out_is_retried_and_the_duplicate_is_harmless(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
) -> None:
    # The first call answers after the worker gave up on it; the receiver, keyed by webhook-id,
    # stores one of the two calls and answers the other 409.
    receiver.script(delay_s=2.0)
    enqueue(sqs, feedback_queues.requests, member_id=24, request_id="req-24")
    await start_worker(CALLBACK_TIMEOUT_SECONDS="0.5")

    await eventually(lambda: sorted(receiver.statuses()) == [200, 409])
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))
    assert receive_all(sqs, feedback_queues.dead_letters) == []


async def test_callback_attempts_spent_on_5xx_return_the_message_for_a_later_try(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
    llm: FakeLlm,
) -> None:
    receiver.script(status=503, times=2)
    enqueue(sqs, feedback_queues.requests, member_id=25, request_id="req-25")
    await start_worker(CALLBACK_MAX_ATTEMPTS="2")

    await eventually(lambda: receiver.statuses() == [503, 503, 200])
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))
    assert llm.stats()["requests"] == 2  # the message came back and was answered again
