"""Handing unworked messages back to SQS never spends a last receive: what would be one is sent
again as a copy of the same request that counts the receives before it."""

from collections.abc import Iterator

import pytest
from devstack.queues import FeedbackQueues
from feedback_worker.aws_calls import AwsCalls
from feedback_worker.source import QueueMessage
from feedback_worker.sqs import Sqs, SqsSource
from mypy_boto3_sqs import SQSClient

from tests.support.queues import enqueue, queue_counts

MAX_RECEIVES = 3  # the feedback_queues fixture's redrive limit


@pytest.fixture
def queue(sqs: SQSClient, feedback_queues: FeedbackQueues) -> Iterator[SqsSource]:
    aws = AwsCalls(4)
    yield SqsSource(
        Sqs(sqs, aws), feedback_queues.requests, feedback_queues.dead_letters, MAX_RECEIVES
    )
    aws.close()


async def receive_one(queue: SqsSource) -> QueueMessage:
    [message] = await queue.receive(1, wait_seconds=1, visibility_timeout=30)
    return message


async def test_a_message_on_its_last_receive_comes_back_as_a_copy_of_the_same_request(
    sqs: SQSClient, feedback_queues: FeedbackQueues, queue: SqsSource
) -> None:
    enqueue(sqs, feedback_queues.requests, member_id=7, request_id="week-24")
    message = await receive_one(queue)
    for _ in range(MAX_RECEIVES - 1):
        await queue.change_visibility([message], 0)
        message = await receive_one(queue)
    assert message.receive_count == MAX_RECEIVES

    await queue.hand_back([message])
    copy = await receive_one(queue)

    assert copy.message_id != message.message_id
    assert (copy.body, copy.group_id) == (message.body, message.group_id)
    assert copy.deduplication_id == "week-24"  # the request's identity, not the copy's own
    assert (copy.receive_count, copy.receives) == (1, MAX_RECEIVES)
    assert queue_counts(sqs, feedback_queues.dead_letters) == (0, 0)
    assert queue_counts(sqs, feedback_queues.requests) == (0, 1)  # the copy alone, held


async def test_a_message_with_receives_to_spare_is_made_visible_as_it_is(
    sqs: SQSClient, feedback_queues: FeedbackQueues, queue: SqsSource
) -> None:
    enqueue(sqs, feedback_queues.requests, member_id=8, request_id="week-25")
    message = await receive_one(queue)

    await queue.hand_back([message])
    again = await receive_one(queue)

    assert (again.message_id, again.receive_count, again.receives) == (message.message_id, 2, 2)
