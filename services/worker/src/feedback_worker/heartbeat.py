"""Keeps held messages invisible while they are worked on, however slow the LLM is.

One loop for every held message: every third of the visibility timeout it renews them all
(batched, ten per call on SQS), so a slow answer never lets a message reappear and be worked
twice. It holds no lock across the network: `track` and `forget` are plain dictionary updates,
so a message's settle never waits for a renewal. A renewal already on its way when a message is
handed back with a delay may still extend it once; the message then comes back at most one
visibility timeout later than asked, never sooner.
"""

import asyncio
import contextlib
import logging

from feedback_worker.source import MessageSource, QueueMessage, SourceError

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, source: MessageSource, visibility_timeout: int) -> None:
        self._source = source
        self._visibility_timeout = visibility_timeout
        self._messages: dict[str, QueueMessage] = {}
        """Message id → its newest received copy: a renewal uses the newest receipt handle."""
        self._stopped = asyncio.Event()
        self._quiet = asyncio.Event()
        """Set while no renewal is on its way."""
        self._quiet.set()

    def track(self, message: QueueMessage) -> None:
        self._messages[message.message_id] = message

    def forget(self, message_id: str) -> None:
        self._messages.pop(message_id, None)

    async def run(self) -> None:
        """Renew until `stop()`."""
        interval = self._visibility_timeout / 3
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=interval)
            if self._messages and not self._stopped.is_set():
                self._quiet.clear()
                try:
                    await self._renew(list(self._messages.values()))
                finally:
                    self._quiet.set()

    async def quiet(self) -> None:
        """Wait until no renewal is on its way: after `forget`, a release that follows this
        cannot be overwritten by a renewal that still carried the message."""
        await self._quiet.wait()

    def stop(self) -> None:
        self._stopped.set()
        self._messages.clear()

    async def _renew(self, messages: list[QueueMessage]) -> None:
        try:
            await self._source.change_visibility(messages, self._visibility_timeout)
        except SourceError as error:
            log.error("heartbeat: could not renew %d message(s): %s", len(messages), error)
        else:
            log.debug("heartbeat: renewed %d message(s)", len(messages))
