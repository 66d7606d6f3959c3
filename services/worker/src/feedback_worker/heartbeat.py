"""Keeps in-flight messages invisible while they are worked on, however slow the LLM is.

One loop for every in-flight message: every third of the visibility timeout it renews them all
with batched ChangeMessageVisibility calls (10 per call), so a slow answer never lets the message
reappear and be delivered twice.
"""

import asyncio
import contextlib
import logging

from botocore.exceptions import BotoCoreError, ClientError

from feedback_worker.sqs import FeedbackQueue, QueueMessage

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, queue: FeedbackQueue, visibility_timeout: int) -> None:
        self._queue = queue
        self._visibility_timeout = visibility_timeout
        self._messages: dict[str, QueueMessage] = {}
        # Held while a renewal is under way: once `forget` returns, no renewal of that message is
        # in flight, so the caller's own visibility change (a retry delay, 0) is not overwritten.
        self._lock = asyncio.Lock()
        self._stopped = asyncio.Event()

    def track(self, message: QueueMessage) -> None:
        self._messages[message.message_id] = message

    async def forget(self, message: QueueMessage) -> None:
        async with self._lock:
            self._messages.pop(message.message_id, None)

    async def run(self) -> None:
        interval = self._visibility_timeout / 3
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=interval)
            async with self._lock:
                if self._messages and not self._stopped.is_set():
                    await self._renew(list(self._messages.values()))

    async def stop(self) -> None:
        """End the loop; returns only once no renewal is in flight."""
        self._stopped.set()
        async with self._lock:
            self._messages.clear()

    async def _renew(self, messages: list[QueueMessage]) -> None:
        try:
            await self._queue.set_visibility(messages, self._visibility_timeout)
        except (BotoCoreError, ClientError) as error:
            log.error("heartbeat: could not renew %d message(s): %s", len(messages), error)
        else:
            log.debug("heartbeat: renewed %d message(s)", len(messages))
