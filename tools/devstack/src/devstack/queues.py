"""The queues the platform needs, created the way production has them (FIFO, DLQ, redrive)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType


@dataclass(frozen=True)
class FeedbackQueues:
    requests: str
    dead_letters: str
    results: str


def create_feedback_queues(
    sqs: SQSClient,
    prefix: str = "feedback",
    max_receive_count: int = 5,
    visibility_timeout: int = 60,
) -> FeedbackQueues:
    """Create (or find) `{prefix}-requests.fifo` with its DLQ and `{prefix}-results.fifo`."""
    fifo: dict[QueueAttributeNameType, str] = {"FifoQueue": "true"}
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-requests-dlq.fifo", Attributes=fifo)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    requests_url = sqs.create_queue(
        QueueName=f"{prefix}-requests.fifo",
        Attributes={
            **fifo,
            "RedrivePolicy": json.dumps(redrive),
            "VisibilityTimeout": str(visibility_timeout),
        },
    )["QueueUrl"]
    results_url = sqs.create_queue(QueueName=f"{prefix}-results.fifo", Attributes=fifo)["QueueUrl"]
    return FeedbackQueues(requests=requests_url, dead_letters=dlq_url, results=results_url)
