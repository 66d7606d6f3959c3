"""Every operation the worker performs on SQS, run off the event loop.

boto3 blocks, so each call runs on a thread pool sized for the worker's concurrency: the loop's
default executor has only cpu+4 threads and would cap how many messages can be finished at once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from llm_common.aws import aws_client

from feedback_worker.batching import MAX_BATCH as MAX_BATCH  # consumer sizes receives with it
from feedback_worker.batching import Batcher

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import MessageSystemAttributeNameType
    from mypy_boto3_sqs.type_defs import (
        DeleteMessageBatchRequestEntryTypeDef,
        DeleteMessageBatchResultTypeDef,
        MessageAttributeValueOutputTypeDef,
        MessageAttributeValueTypeDef,
        MessageTypeDef,
    )

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

MAX_MESSAGE_ATTRIBUTES = 10
MAX_REASON_LENGTH = 1_000
REASON_ATTRIBUTE = "DeadLetterReason"
SOURCE_MESSAGE_ATTRIBUTE = "DeadLetterSourceMessageId"


@dataclass(frozen=True)
class QueueMessage:
    """One received message, with the system attributes the worker uses."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    group_id: str | None
    deduplication_id: str | None
    attributes: Mapping[str, MessageAttributeValueOutputTypeDef]
    """The sender's message attributes; trace context arrives here (docs/observability.md)."""
    sent_timestamp: str | None = None
    """SQS's SentTimestamp (epoch milliseconds): where the time waiting in the queue starts."""

    @classmethod
    def from_sqs(cls, raw: MessageTypeDef) -> QueueMessage:
        system = raw.get("Attributes", {})
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            receive_count=int(system.get("ApproximateReceiveCount", "1")),
            group_id=system.get("MessageGroupId"),
            deduplication_id=system.get("MessageDeduplicationId"),
            attributes=raw.get("MessageAttributes", {}),
            sent_timestamp=system.get("SentTimestamp"),
        )

    def as_sqs_message(self) -> MessageTypeDef:
        """The parts of the received message that `queue_wait_span` reads."""
        system: dict[MessageSystemAttributeNameType, str] = {
            "ApproximateReceiveCount": str(self.receive_count)
        }
        if self.sent_timestamp is not None:
            system["SentTimestamp"] = self.sent_timestamp
        return {"MessageId": self.message_id, "Attributes": system}


class Sqs:
    """A boto3 SQS client and the thread pool its calls run on."""

    def __init__(self, client: SQSClient, threads: int) -> None:
        self.client = client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sqs")

    @classmethod
    def for_messages(cls, region: str, most_held: int) -> Sqs:
        # No SQS call waits for a thread: one per message the worker may hold (each may be
        # delivered, retried or dead-lettered at once), plus the heartbeat and a spare.
        threads = most_held + 2
        return cls(aws_client("sqs", region, max_pool_connections=threads), threads)

    async def call(self, operation: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(operation, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()


class FeedbackQueue:
    """The request queue and its dead-letter queue."""

    def __init__(
        self, sqs: Sqs, url: str, dead_letter_url: str, max_receive_count: int | None = None
    ) -> None:
        self._sqs = sqs
        self.url = url
        self.dead_letter_url = dead_letter_url
        # One DeleteMessageBatch for up to ten finished messages: on a busy worker the per-call
        # cost of SQS (and of a local emulator) is paid once per ten messages, not per message.
        self._deletes: Batcher[DeleteMessageBatchRequestEntryTypeDef] = Batcher(
            "DeleteMessageBatch", self._delete_batch
        )
        self.name = url.rstrip("/").rsplit("/", 1)[-1]
        """The queue's name, the last part of its URL (messaging.destination.name)."""
        self.max_receive_count = max_receive_count
        """The redrive limit: SQS would move a message on its next receive, without a reason."""

    def is_last_receive(self, message: QueueMessage) -> bool:
        """True when returning `message` would let SQS dead-letter it without saying why."""
        return (
            self.max_receive_count is not None and message.receive_count >= self.max_receive_count
        )

    def receive_blocking(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[QueueMessage]:
        """One long poll; blocking, for the poller's own thread."""
        answer = self._sqs.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_timeout,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return [QueueMessage.from_sqs(raw) for raw in answer.get("Messages", [])]

    async def delete(self, message: QueueMessage) -> None:
        """Delete `message`; raises ClientError if SQS refuses it (an expired receipt handle)."""
        await self._deletes.submit(
            lambda entry_id: {"Id": entry_id, "ReceiptHandle": message.receipt_handle}
        )

    async def _delete_batch(
        self, entries: list[DeleteMessageBatchRequestEntryTypeDef]
    ) -> DeleteMessageBatchResultTypeDef:
        return await self._sqs.call(
            self._sqs.client.delete_message_batch, QueueUrl=self.url, Entries=entries
        )

    async def return_after(self, message: QueueMessage, seconds: int) -> None:
        """Make the message visible again in `seconds` (0: at once)."""
        await self._sqs.call(
            self._sqs.client.change_message_visibility,
            QueueUrl=self.url,
            ReceiptHandle=message.receipt_handle,
            VisibilityTimeout=seconds,
        )

    async def set_visibility(self, messages: Sequence[QueueMessage], seconds: int) -> None:
        await self._sqs.call(self.set_visibility_blocking, messages, seconds)

    def set_visibility_blocking(self, messages: Sequence[QueueMessage], seconds: int) -> None:
        """Batched ChangeMessageVisibility; a message that fails is logged, the rest go on."""
        for start in range(0, len(messages), MAX_BATCH):
            chunk = messages[start : start + MAX_BATCH]
            answer = self._sqs.client.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {
                        "Id": str(index),
                        "ReceiptHandle": message.receipt_handle,
                        "VisibilityTimeout": seconds,
                    }
                    for index, message in enumerate(chunk)
                ],
            )
            for failure in answer.get("Failed", []):
                message = chunk[int(failure["Id"])]
                log.warning(
                    "could not set the visibility of message %s to %ds: %s",
                    message.message_id,
                    seconds,
                    failure.get("Message", failure["Code"]),
                )

    async def dead_letter(self, message: QueueMessage, reason: str) -> None:
        """Copy the message to the DLQ with its reason, then delete it from the request queue."""
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in (
                (REASON_ATTRIBUTE, reason[:MAX_REASON_LENGTH]),
                (SOURCE_MESSAGE_ATTRIBUTE, message.message_id),
            )
        }
        # Keep the sender's attributes (trace context) where SQS's limit of ten leaves room.
        room = MAX_MESSAGE_ATTRIBUTES - len(attributes)
        kept = dict(list(_resendable(message.attributes).items())[:room])
        await self._sqs.call(
            self._sqs.client.send_message,
            QueueUrl=self.dead_letter_url,
            MessageBody=message.body,
            MessageAttributes={**kept, **attributes},
            # The same group keeps a member's messages in order; the message id never repeats.
            MessageGroupId=message.group_id or "dead-letters",
            MessageDeduplicationId=message.message_id,
        )
        await self.delete(message)


def _resendable(
    attributes: Mapping[str, MessageAttributeValueOutputTypeDef],
) -> dict[str, MessageAttributeValueTypeDef]:
    kept: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in attributes.items():
        if "StringValue" in value:
            kept[name] = {"DataType": value["DataType"], "StringValue": value["StringValue"]}
        elif "BinaryValue" in value:
            kept[name] = {"DataType": value["DataType"], "BinaryValue": value["BinaryValue"]}
    return kept


@dataclass(frozen=True)
class Redrive:
    """The request queue's RedrivePolicy: where SQS moves a message, and after how many receives."""

    dead_letter_url: str | None
    max_receive_count: int | None


def read_redrive_policy(client: SQSClient, queue_url: str) -> Redrive:
    """`queue_url`'s RedrivePolicy; both fields None without one."""
    attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        return Redrive(dead_letter_url=None, max_receive_count=None)
    parsed = json.loads(policy)
    # arn:aws:sqs:<region>:<account>:<name>
    *_, account, name = parsed["deadLetterTargetArn"].split(":")
    url = client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    return Redrive(dead_letter_url=url, max_receive_count=int(parsed["maxReceiveCount"]))
