"""Reading and filling SQS queues (moto over HTTP) as the backend and ingest do."""

import hashlib
import json
from typing import TYPE_CHECKING

from tests.support.records import weekly_record

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef


def receive_all(
    sqs: "SQSClient", queue_url: str, wait_s: int = 1, visibility_s: int = 120
) -> list["MessageTypeDef"]:
    """Every message visible in `queue_url` now, with all attributes (left in flight)."""
    messages: list[MessageTypeDef] = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_s,
        VisibilityTimeout=visibility_s,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        messages.extend(batch)
    return messages


def queue_counts(sqs: "SQSClient", queue_url: str) -> tuple[int, int]:
    """(visible, in flight or delayed) messages."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def queue_depth(sqs: "SQSClient", queue_url: str) -> int:
    """Messages visible, in flight or delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)  # type: ignore[arg-type]
    return sum(int(value) for value in attributes["Attributes"].values())


def enqueue(sqs: "SQSClient", queue_url: str, member_id: int, request_id: str) -> None:
    """What ingest does: group = member, dedup = request id."""
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(weekly_record(member_id, request_id), ensure_ascii=False),
        MessageGroupId=str(member_id),
        MessageDeduplicationId=request_id,
    )


def backend_message(member_id: int) -> tuple[str, str]:
    """A request as the backend publishes it itself: (body without requestId, its dedup id
    `memberId-sha256(body)`); it sends it with one constant group."""
    body = json.dumps(weekly_record(member_id), ensure_ascii=False)
    return body, f"{member_id}-{hashlib.sha256(body.encode()).hexdigest()}"


def enqueue_raw(sqs: "SQSClient", queue_url: str, body: str, group: str) -> str:
    answer = sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        MessageGroupId=group,
        MessageDeduplicationId=hashlib.sha256(body.encode()).hexdigest(),
    )
    return answer["MessageId"]


def dead_letter_reason(message: "MessageTypeDef") -> str:
    return message.get("MessageAttributes", {}).get("DeadLetterReason", {}).get("StringValue", "")


def body_request_id(message: "MessageTypeDef") -> str:
    request_id: str = json.loads(message["Body"])["requestId"]
    return request_id
