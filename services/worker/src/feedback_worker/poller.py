"""Long polls that a shutdown does not have to wait out.

A receive may block for up to 20 seconds and boto3 cannot cancel it. Each poll therefore runs on
its own daemon thread: on SIGTERM the worker stops waiting for it and drains, and the process may
exit while the poll is still open. Whatever a poll returns after shutdown began is made visible
again at once instead of staying hidden for a whole visibility timeout.
"""

import asyncio
import logging
import threading
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from feedback_worker.sqs import FeedbackQueue, QueueMessage

log = logging.getLogger(__name__)


@dataclass
class Poll:
    """One receive in progress."""

    future: "asyncio.Future[list[QueueMessage]]"
    handed_over: bool = False
    """True once its outcome is on its way to the event loop (set under the poller's lock)."""


class Poller:
    def __init__(self, queue: FeedbackQueue, wait_seconds: int, visibility_timeout: int) -> None:
        self._queue = queue
        self._wait_seconds = wait_seconds
        self._visibility_timeout = visibility_timeout
        self._lock = threading.Lock()
        self._closed = False

    def start(self, max_messages: int) -> Poll:
        poll = Poll(asyncio.get_running_loop().create_future())
        thread = threading.Thread(
            target=self._receive, args=(poll, max_messages), name="sqs-receive", daemon=True
        )
        thread.start()
        return poll

    async def abandon(self, poll: Poll) -> None:
        """Stop taking results; release what `poll` brought, now or whenever it returns."""
        with self._lock:
            self._closed = True
            handed_over = poll.handed_over
        if not handed_over:
            return  # the poll's thread will release its messages itself
        try:
            leftover = await poll.future
        except Exception:
            return  # the poll failed: it holds no messages
        await asyncio.to_thread(self._release, leftover)

    def _receive(self, poll: Poll, max_messages: int) -> None:
        try:
            messages = self._queue.receive_blocking(
                max_messages, self._wait_seconds, self._visibility_timeout
            )
        except Exception as error:
            self._hand_over(poll, [], error)
        else:
            self._hand_over(poll, messages, None)

    def _hand_over(self, poll: Poll, messages: list[QueueMessage], error: Exception | None) -> None:
        with self._lock:
            if not self._closed:
                poll.handed_over = True
                poll.future.get_loop().call_soon_threadsafe(_resolve, poll.future, messages, error)
                return
        self._release(messages)

    def _release(self, messages: list[QueueMessage]) -> None:
        if not messages:
            return
        log.info("shutting down: releasing %d message(s) a poll returned", len(messages))
        try:
            self._queue.set_visibility_blocking(messages, 0)
        except (BotoCoreError, ClientError) as error:
            log.error(
                "could not release them (%s): they come back when their visibility ends", error
            )


def _resolve(
    future: "asyncio.Future[list[QueueMessage]]",
    messages: list[QueueMessage],
    error: Exception | None,
) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(messages)
    else:
        future.set_exception(error)
