"""What the runner needs from a message queue: the `MessageSource` protocol and its messages.

Two implementations: `SqsSource` (feedback_worker.sqs), what production runs, and
`InMemorySource` (feedback_worker.memory), a queue in this process that makes the runner's own
tests deterministic and fast, as dramatiq's StubBroker does for its workers.

Every method is a coroutine: whatever blocks (boto3) is the implementation's business, kept off
the event loop behind this protocol.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mypy_boto3_sqs.literals import MessageSystemAttributeNameType
    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef, MessageTypeDef


@dataclass(frozen=True)
class QueueMessage:
    """One received copy of a message. A message received again is a new copy: same
    `message_id`, a new `receipt_handle` (only the newest one settles it on real SQS)."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    group_id: str | None = None
    deduplication_id: str | None = None
    attributes: "Mapping[str, MessageAttributeValueOutputTypeDef]" = field(default_factory=dict)
    """The sender's message attributes; the trace context arrives here (docs/observability.md)."""
    sent_timestamp: str | None = None
    """When it was sent (epoch milliseconds, SQS's SentTimestamp): queue wait starts there."""
    earlier_receives: int = 0
    """Receives its earlier copies spent, when it is a copy the runner re-sent to spare its
    last receive (`MessageSource.hand_back`); 0 for a message as its sender sent it."""

    @property
    def receives(self) -> int:
        """The receives this message has had, its earlier copies' included: what its retries
        are counted by. Never below `receive_count`, so the runner gives up on a message no
        later than the queue's own redrive would."""
        return self.earlier_receives + self.receive_count

    def as_sqs_message(self) -> "MessageTypeDef":
        """The parts of the received message that `queue_wait_span` reads."""
        system: dict[MessageSystemAttributeNameType, str] = {
            "ApproximateReceiveCount": str(self.receive_count)
        }
        if self.sent_timestamp is not None:
            system["SentTimestamp"] = self.sent_timestamp
        return {"MessageId": self.message_id, "Attributes": system}


class SourceError(Exception):
    """The queue could not do what was asked (unreachable, or it refused); nothing changed."""


class MessageSource(Protocol):
    name: str
    """The queue's name (messaging.destination.name)."""
    dead_letter_name: str
    max_receive_count: int | None
    """The redrive limit: on the receive after this many, the queue would dead-letter the message
    itself, without a reason; None when the queue has no such limit."""

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[QueueMessage]:
        """Up to `max_messages`, waiting up to `wait_seconds` for the first. Cancellable: what a
        cancelled receive still brings in is made visible again by the source itself."""

    async def delete(self, message: QueueMessage) -> None:
        """Settle `message` as done."""

    async def change_visibility(self, messages: Sequence[QueueMessage], seconds: int) -> None:
        """Hide each message for `seconds` from now. A message the queue refuses is logged and
        skipped; the others still change."""

    async def hand_back(self, messages: Sequence[QueueMessage]) -> None:
        """Return messages that were not worked to the queue at once, never spending the last
        receive of one: a message on its last allowed receive would be moved to the DLQ by the
        queue's own redrive when next received, without a reason. Such a message is sent again
        as a copy that carries its identity and the receives it spent, not counting this one
        (`QueueMessage.earlier_receives`), then deleted; the others are made visible. A message
        the queue refuses is logged and skipped."""

    async def dead_letter(self, message: QueueMessage, reason: str) -> None:
        """Move `message` to the dead-letter queue with `reason`, then delete it here."""
