"""A queue in this process, for tests: `InMemorySource` behaves as SQS FIFO does where the
runner can tell, on a clock the test moves.

- a received message is hidden for its visibility timeout, then comes back with a new receipt
  handle and a receive count one higher;
- only the newest receipt handle settles a message: a delete with an older one answers success
  and deletes nothing, as SQS does for a message received again;
- a group's next message waits while an earlier one of the same group is in flight;
- after `max_receive_count` receives the queue itself moves a message to the dead letters,
  without a reason (SQS's redrive);
- `hand_back` sends a message on its last receive again as a new copy, as `SqsSource` does;
- `fail(operation)` makes the next calls of an operation raise `SourceError`.

Time is the source's own (`advance`): a message returned "in 60 s" comes back when the test
says 60 s have passed, so no test sleeps or polls.
"""

import asyncio
import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from feedback_worker.source import QueueMessage, SourceError

log = logging.getLogger(__name__)


@dataclass
class _Stored:
    message_id: str
    body: str
    group_id: str | None
    deduplication_id: str | None
    receive_count: int = 0
    earlier_receives: int = 0
    visible_at: float = 0.0
    receipt_handle: str | None = None
    """The newest receipt handle; None while the message has never been received."""


@dataclass
class DeadLettered:
    """A message in the stub queue's DLQ (`errors.DeadLetter` is the failure that sends one)."""

    message_id: str
    body: str
    reason: str | None
    """None when the queue's own redrive moved it."""


@dataclass
class InMemorySource:
    name: str = "requests.fifo"
    dead_letter_name: str = "requests-dlq.fifo"
    max_receive_count: int | None = 3
    now: float = 0.0
    """The source's clock in seconds; only `advance` moves it."""
    dead_letters: list[DeadLettered] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    """Ids of the messages deleted, in order."""
    receives: int = 0
    """Receive calls that returned at least one message."""
    _messages: dict[str, _Stored] = field(default_factory=dict)
    _failures: dict[str, int] = field(default_factory=dict)
    _ids: "itertools.count[int]" = field(default_factory=itertools.count)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def send(
        self,
        body: str | dict[str, Any],
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Put a message on the queue; returns its message id."""
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        message_id = f"m-{next(self._ids)}"
        self._messages[message_id] = _Stored(
            message_id, text, group_id, deduplication_id, visible_at=self.now
        )
        self._changed.set()
        return message_id

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass on the source's clock."""
        self.now += seconds
        self._changed.set()

    def fail(self, operation: str, times: int = 1) -> None:
        """The next `times` calls of `operation` ("receive", "delete", ...) raise SourceError."""
        self._failures[operation] = times

    def counts(self) -> tuple[int, int]:
        """(visible, hidden) messages, as SQS's approximate counts give them."""
        visible = sum(stored.visible_at <= self.now for stored in self._messages.values())
        return visible, len(self._messages) - visible

    def receive_counts(self) -> dict[str, int]:
        return {stored.message_id: stored.receive_count for stored in self._messages.values()}

    def hidden_until(self, message_id: str) -> float:
        """When the message becomes visible again, on the source's clock."""
        return self._messages[message_id].visible_at

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[QueueMessage]:
        self._maybe_fail("receive")
        received = self._take(max_messages, visibility_timeout)
        if not received and wait_seconds > 0:
            # A long poll: wait for a change (a send, a release), in real time.
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=wait_seconds)
            except TimeoutError:
                return []
            received = self._take(max_messages, visibility_timeout)
        if received:
            self.receives += 1
        return received

    def _take(self, most: int, visibility_timeout: int) -> list[QueueMessage]:
        taken: list[QueueMessage] = []
        busy_groups = {
            stored.group_id
            for stored in self._messages.values()
            if stored.receipt_handle is not None and stored.visible_at > self.now
        }
        for stored in list(self._messages.values()):
            if len(taken) == most:
                break
            if stored.visible_at > self.now or (
                stored.group_id is not None and stored.group_id in busy_groups
            ):
                continue
            if (
                self.max_receive_count is not None
                and stored.receive_count >= self.max_receive_count
            ):
                del self._messages[stored.message_id]
                self.dead_letters.append(DeadLettered(stored.message_id, stored.body, None))
                continue
            stored.receive_count += 1
            stored.visible_at = self.now + visibility_timeout
            stored.receipt_handle = f"{stored.message_id}/r{stored.receive_count}"
            if stored.group_id is not None:
                busy_groups.add(stored.group_id)
            taken.append(
                QueueMessage(
                    message_id=stored.message_id,
                    receipt_handle=stored.receipt_handle,
                    body=stored.body,
                    receive_count=stored.receive_count,
                    group_id=stored.group_id,
                    deduplication_id=stored.deduplication_id,
                    earlier_receives=stored.earlier_receives,
                )
            )
        return taken

    async def delete(self, message: QueueMessage) -> None:
        self._maybe_fail("delete")
        stored = self._current(message)
        if stored is not None:
            del self._messages[stored.message_id]
            self.deleted.append(stored.message_id)
            self._changed.set()

    async def change_visibility(self, messages: Sequence[QueueMessage], seconds: int) -> None:
        self._maybe_fail("change_visibility")
        for message in messages:
            stored = self._current(message)
            if stored is None:
                log.warning("message %s: receipt handle no longer valid", message.message_id)
                continue
            stored.visible_at = self.now + seconds
        self._changed.set()

    async def hand_back(self, messages: Sequence[QueueMessage]) -> None:
        self._maybe_fail("hand_back")
        for message in messages:
            stored = self._current(message)
            if stored is None:
                log.warning("message %s: receipt handle no longer valid", message.message_id)
            elif (
                self.max_receive_count is not None
                and message.receive_count >= self.max_receive_count
            ):
                del self._messages[stored.message_id]
                original = message.deduplication_id or message.message_id
                copy = self.send(stored.body, stored.group_id, original)
                self._messages[copy].earlier_receives = message.receives - 1
            else:
                stored.visible_at = self.now
        self._changed.set()

    async def dead_letter(self, message: QueueMessage, reason: str) -> None:
        self._maybe_fail("dead_letter")
        self.dead_letters.append(DeadLettered(message.message_id, message.body, reason))
        await self.delete(message)

    def _current(self, message: QueueMessage) -> _Stored | None:
        """The stored message if `message` holds its newest receipt handle."""
        stored = self._messages.get(message.message_id)
        if stored is None or stored.receipt_handle != message.receipt_handle:
            return None
        return stored

    def _maybe_fail(self, operation: str) -> None:
        left = self._failures.get(operation, 0)
        if left:
            self._failures[operation] = left - 1
            raise SourceError(f"{operation} failed (injected)")
