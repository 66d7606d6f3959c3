"""SQS for the worker.

`Sqs` is the boto3 client and the worker's `AwsCalls`, the threads its blocking calls run on;
everything else awaits `Sqs.call`. `SqsSource` is the request queue and its dead-letter queue as
a `MessageSource`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from llm_common.aws import aws_client

from feedback_worker.aws_calls import AwsCalls
from feedback_worker.batching import MAX_BATCH, Batcher
from feedback_worker.source import QueueMessage, SourceError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
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
EARLIER_RECEIVES_ATTRIBUTE = "EarlierReceives"
"""On a copy sent again to spare its original's last receive: the receives spent before it."""
ORIGINAL_DEDUPLICATION_ATTRIBUTE = "OriginalDeduplicationId"
"""On such a copy: the original's deduplication id, which the copy cannot reuse (SQS would drop
it within 5 minutes) but which names the request of a message the backend published itself."""
SQS_ERRORS = (BotoCoreError, ClientError)


class Sqs:
    """A boto3 SQS client whose blocking calls run on the worker's `AwsCalls`."""

    def __init__(self, client: SQSClient, calls: AwsCalls) -> None:
        self.client = client
        self._calls = calls

    @classmethod
    def on(cls, calls: AwsCalls, region: str) -> Sqs:
        return cls(aws_client("sqs", region, max_pool_connections=calls.threads), calls)

    async def call(self, operation: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one blocking call on the worker's AWS threads."""
        return await self._calls.run(operation, *args, **kwargs)

    def close(self) -> None:
        self.client.close()


class SqsSource:
    """The request queue (FIFO) and its dead-letter queue, as a `MessageSource`."""

    def __init__(
        self,
        sqs: Sqs,
        url: str,
        dead_letter_url: str,
        max_receive_count: int | None = None,
    ) -> None:
        self._sqs = sqs
        self.url = url
        self.dead_letter_url = dead_letter_url
        self.name = queue_name(url)
        self.dead_letter_name = queue_name(dead_letter_url)
        self.max_receive_count = max_receive_count
        # One DeleteMessageBatch for up to ten finished messages: on a busy worker the per-call
        # cost of SQS (and of a local emulator) is paid once per ten messages, not per message.
        self._deletes: Batcher[DeleteMessageBatchRequestEntryTypeDef] = Batcher(
            "DeleteMessageBatch", self._delete_batch
        )

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[QueueMessage]:
        """One long poll, on a daemon thread of its own.

        A poll may block for 20 s and boto3 cannot cancel it: on SIGTERM the worker stops
        waiting and the process may exit while the poll is still open. Whatever a cancelled poll
        brings in is made visible again at once instead of staying hidden for a whole visibility
        timeout.
        """
        poll = _Poll(asyncio.get_running_loop())
        threading.Thread(
            target=self._poll,
            args=(poll, max_messages, wait_seconds, visibility_timeout),
            name="sqs-receive",
            daemon=True,
        ).start()
        try:
            return await asyncio.shield(poll.future)
        except asyncio.CancelledError:
            poll.abandon(self._release_blocking)
            raise

    def _poll(self, poll: _Poll, max_messages: int, wait_seconds: int, visibility: int) -> None:
        try:
            answer = self._sqs.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except SQS_ERRORS as error:
            poll.hand_over(
                [], SourceError(f"receive from {self.name}: {error}"), self._release_blocking
            )
        else:
            messages = [message_from_sqs(raw) for raw in answer.get("Messages", [])]
            poll.hand_over(messages, None, self._release_blocking)

    def _release_blocking(self, messages: list[QueueMessage]) -> None:
        if not messages:
            return
        log.info("shutting down: releasing %d message(s) a poll returned", len(messages))
        try:
            self._hand_back_blocking(messages)
        except SQS_ERRORS as error:
            log.error(
                "could not release them (%s): they come back when their visibility ends", error
            )

    async def delete(self, message: QueueMessage) -> None:
        try:
            await self._deletes.submit(
                lambda entry_id: {"Id": entry_id, "ReceiptHandle": message.receipt_handle}
            )
        except SQS_ERRORS as error:
            raise SourceError(f"delete: {error}") from error

    async def _delete_batch(
        self, entries: list[DeleteMessageBatchRequestEntryTypeDef]
    ) -> DeleteMessageBatchResultTypeDef:
        return await self._sqs.call(
            self._sqs.client.delete_message_batch, QueueUrl=self.url, Entries=entries
        )

    async def change_visibility(self, messages: Sequence[QueueMessage], seconds: int) -> None:
        try:
            await self._sqs.call(self._change_visibility_blocking, messages, seconds)
        except SQS_ERRORS as error:
            raise SourceError(f"change visibility: {error}") from error

    async def hand_back(self, messages: Sequence[QueueMessage]) -> None:
        try:
            await self._sqs.call(self._hand_back_blocking, messages)
        except SQS_ERRORS as error:
            raise SourceError(f"hand back: {error}") from error

    def _hand_back_blocking(self, messages: Sequence[QueueMessage]) -> None:
        self._change_visibility_blocking([m for m in messages if not self._on_last_receive(m)], 0)
        for message in messages:
            if self._on_last_receive(message):
                self._send_again_blocking(message)

    def _on_last_receive(self, message: QueueMessage) -> bool:
        limit = self.max_receive_count
        return limit is not None and message.receive_count >= limit

    def _send_again_blocking(self, message: QueueMessage) -> None:
        """A copy of `message` that does not count the receive it is handed back from; then the
        original is deleted (a copy that lands twice is one request: the request store knows)."""
        self._sqs.client.send_message(
            QueueUrl=self.url,
            MessageBody=message.body,
            MessageAttributes=carried_attributes(
                message,
                {
                    EARLIER_RECEIVES_ATTRIBUTE: str(message.receives - 1),
                    ORIGINAL_DEDUPLICATION_ATTRIBUTE: message.deduplication_id
                    or message.message_id,
                },
            ),
            MessageGroupId=message.group_id or "handed-back",
            # One copy per handed-back receive, even if this send is retried.
            MessageDeduplicationId=f"{message.message_id}-{message.receive_count}",
        )
        self._sqs.client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt_handle)
        log.info(
            "message %s handed back on its last receive (%d): sent again, %d receive(s) counted",
            message.message_id,
            message.receive_count,
            message.receives - 1,
        )

    def _change_visibility_blocking(self, messages: Sequence[QueueMessage], seconds: int) -> None:
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
                log.warning(
                    "could not set the visibility of message %s to %ds: %s",
                    chunk[int(failure["Id"])].message_id,
                    seconds,
                    failure.get("Message", failure["Code"]),
                )

    async def dead_letter(self, message: QueueMessage, reason: str) -> None:
        attributes = carried_attributes(
            message,
            {
                REASON_ATTRIBUTE: reason[:MAX_REASON_LENGTH],
                SOURCE_MESSAGE_ATTRIBUTE: message.message_id,
            },
        )
        try:
            await self._sqs.call(
                self._sqs.client.send_message,
                QueueUrl=self.dead_letter_url,
                MessageBody=message.body,
                MessageAttributes=attributes,
                # The same group keeps a member's messages in order; the message id never repeats.
                MessageGroupId=message.group_id or "dead-letters",
                MessageDeduplicationId=message.message_id,
            )
        except SQS_ERRORS as error:
            raise SourceError(f"send to {self.dead_letter_name}: {error}") from error
        await self.delete(message)


class _Poll:
    """One receive in progress, between its thread and the event loop.

    The lock decides, once, who releases what the poll brings: the thread (the poll was
    abandoned before it returned) or the loop (it was handed over, then abandoned).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[list[QueueMessage]] = loop.create_future()
        self._lock = threading.Lock()
        self._abandoned = False
        self._handed_over = False

    def hand_over(
        self,
        messages: list[QueueMessage],
        error: Exception | None,
        release: Callable[[list[QueueMessage]], None],
    ) -> None:
        """From the poll's thread: give the outcome to the loop, or release it if abandoned."""
        with self._lock:
            if not self._abandoned:
                try:
                    self.future.get_loop().call_soon_threadsafe(
                        _resolve, self.future, messages, error
                    )
                except RuntimeError:  # the loop is closed: the process is exiting
                    pass
                else:
                    self._handed_over = True
                    return
        release(messages)

    def abandon(self, release: Callable[[list[QueueMessage]], None]) -> None:
        """From the loop, once the receive was cancelled."""
        with self._lock:
            self._abandoned = True
            handed_over = self._handed_over
        if handed_over:
            self.future.add_done_callback(lambda done: _release_later(done, release))


def _resolve(
    future: asyncio.Future[list[QueueMessage]],
    messages: list[QueueMessage],
    error: Exception | None,
) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(messages)
    else:
        future.set_exception(error)


def _release_later(
    done: asyncio.Future[list[QueueMessage]], release: Callable[[list[QueueMessage]], None]
) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    threading.Thread(target=release, args=(done.result(),), daemon=True).start()


def message_from_sqs(raw: MessageTypeDef) -> QueueMessage:
    system = raw.get("Attributes", {})
    attributes = raw.get("MessageAttributes", {})
    original = _string_attribute(attributes, ORIGINAL_DEDUPLICATION_ATTRIBUTE)
    earlier = _string_attribute(attributes, EARLIER_RECEIVES_ATTRIBUTE) or "0"
    return QueueMessage(
        message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=raw.get("Body", ""),
        receive_count=int(system.get("ApproximateReceiveCount", "1")),
        group_id=system.get("MessageGroupId"),
        deduplication_id=original or system.get("MessageDeduplicationId"),
        attributes=attributes,
        sent_timestamp=system.get("SentTimestamp"),
        earlier_receives=int(earlier) if earlier.isdigit() else 0,
    )


def _string_attribute(
    attributes: Mapping[str, MessageAttributeValueOutputTypeDef], name: str
) -> str | None:
    value = attributes.get(name)
    return None if value is None else value.get("StringValue")


def queue_name(url: str) -> str:
    """A queue's name: the last part of its URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def carried_attributes(
    message: QueueMessage, own: Mapping[str, str]
) -> dict[str, MessageAttributeValueTypeDef]:
    """`own` string attributes, and the sender's (trace context) where SQS's limit of ten
    leaves room: what a message sent on (to the DLQ, or again) keeps of the one received."""
    attributes: dict[str, MessageAttributeValueTypeDef] = {
        name: {"DataType": "String", "StringValue": value} for name, value in own.items()
    }
    senders = {n: v for n, v in resendable(message.attributes).items() if n not in own}
    kept = dict(list(senders.items())[: MAX_MESSAGE_ATTRIBUTES - len(attributes)])
    return {**kept, **attributes}


def resendable(
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
class QueueFacts:
    """What start-up learns about the request queue."""

    fifo: bool
    dead_letter_url: str | None
    """From its RedrivePolicy; None without one."""
    max_receive_count: int | None


def read_queue_facts(client: SQSClient, queue_url: str) -> QueueFacts:
    """Blocking: the request queue's FIFO flag and RedrivePolicy."""
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["FifoQueue", "RedrivePolicy"]
    ).get("Attributes", {})
    fifo = attributes.get("FifoQueue", "false").lower() == "true"
    policy = attributes.get("RedrivePolicy")
    if not policy:
        return QueueFacts(fifo=fifo, dead_letter_url=None, max_receive_count=None)
    parsed = json.loads(policy)
    # arn:aws:sqs:<region>:<account>:<name>
    *_, account, name = parsed["deadLetterTargetArn"].split(":")
    url = client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    return QueueFacts(
        fifo=fifo, dead_letter_url=url, max_receive_count=int(parsed["maxReceiveCount"])
    )
