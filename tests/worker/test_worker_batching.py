"""Deletes of messages that finish together go to SQS in batches; each caller still learns its
own outcome."""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from devstack.queues import FeedbackQueues
from feedback_worker.aws_calls import AwsCalls
from feedback_worker.source import QueueMessage, SourceError
from feedback_worker.sqs import Sqs, SqsSource
from mypy_boto3_sqs import SQSClient

from tests.support.queues import enqueue


@pytest.fixture
def queue(sqs: SQSClient, feedback_queues: FeedbackQueues) -> Iterator[SqsSource]:
    aws = AwsCalls(8)
    yield SqsSource(Sqs(sqs, aws), feedback_queues.requests, feedback_queues.dead_letters)
    aws.close()


async def receive_all(queue: SqsSource, count: int) -> list[QueueMessage]:
    messages: list[QueueMessage] = []
    while len(messages) < count:
        messages += await queue.receive(10, wait_seconds=1, visibility_timeout=30)
    return messages


def count_calls(sqs: SQSClient, *operations: str) -> list[int]:
    """A list that grows by one per call of any of `operations` the client sends."""
    calls: list[int] = []

    def counted(**_: Any) -> None:
        calls.append(1)

    for operation in operations:
        sqs.meta.events.register(f"before-call.sqs.{operation}", counted)
    return calls


def visible_and_in_flight(sqs: SQSClient, url: str) -> tuple[str, str]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
    )


async def test_messages_finishing_together_are_deleted_ten_per_call(
    sqs: SQSClient, feedback_queues: FeedbackQueues, queue: SqsSource
) -> None:
    for member_id in range(1, 26):
        enqueue(sqs, feedback_queues.requests, member_id, f"req-{member_id}")
    messages = await receive_all(queue, 25)
    calls = count_calls(sqs, "DeleteMessage", "DeleteMessageBatch")

    await asyncio.gather(*(queue.delete(message) for message in messages))

    assert visible_and_in_flight(sqs, feedback_queues.requests) == ("0", "0")
    assert len(calls) <= 4  # the first alone, then batches of ten while calls are in flight


async def test_a_refused_delete_fails_only_its_own_message(
    sqs: SQSClient, feedback_queues: FeedbackQueues, queue: SqsSource
) -> None:
    for member_id in (1, 2):
        enqueue(sqs, feedback_queues.requests, member_id, f"req-{member_id}")
    good = await receive_all(queue, 2)
    stale = QueueMessage(
        message_id="gone",
        receipt_handle="not-a-receipt-handle",
        body="{}",
        receive_count=1,
        group_id="3",
        deduplication_id="req-3",
        attributes={},
    )

    outcomes = await asyncio.gather(
        *(queue.delete(message) for message in [*good, stale]), return_exceptions=True
    )

    assert outcomes[:2] == [None, None]
    assert isinstance(outcomes[2], SourceError)
    assert visible_and_in_flight(sqs, feedback_queues.requests) == ("0", "0")
