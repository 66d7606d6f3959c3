"""Readiness: the service is ready when its queue answers and takes messages, and its request
store (when configured) answers."""

import math
import time

import anyio
import anyio.to_thread
from llm_common.requests_store import RequestStore

from feedback_ingest.queue import FeedbackQueue

READINESS_CACHE_SECONDS = 5.0
REACHABLE = "reachable"


class ReadinessProbe:
    """Asks SQS and DynamoDB at most once per `cache_seconds`: every replica is probed every few
    seconds, and those probes must not turn into a steady load on them.

    GetQueueAttributes answering is not enough: a role allowed to read the queue but not to send
    to it (AccessDenied on SendMessage) would look ready and answer every request with 503. The
    last send's permanent refusal makes the queue not ready too (FeedbackQueue.refusal)."""

    def __init__(
        self,
        queue: FeedbackQueue,
        store: RequestStore | None,
        cache_seconds: float = READINESS_CACHE_SECONDS,
    ):
        self._queue = queue
        self._store = store
        self._cache_seconds = cache_seconds
        self._checked_at = -math.inf
        self._answers: dict[str, str] = {}
        # One check at a time: probes that arrive meanwhile wait for its answer.
        self._lock = anyio.Lock()

    async def status(self) -> dict[str, str]:
        """Each dependency's state: `reachable`, or what is wrong with it."""
        async with self._lock:
            if time.monotonic() - self._checked_at >= self._cache_seconds:
                self._answers = await self._ask()
                self._checked_at = time.monotonic()
        refusal = self._queue.refusal()
        if refusal is not None:
            return {**self._answers, "queue": f"refuses SendMessage: {refusal}"}
        return dict(self._answers)

    async def _ask(self) -> dict[str, str]:
        answers = {"queue": REACHABLE if await self._queue.is_reachable() else "unreachable"}
        if self._store is not None:
            usable = await anyio.to_thread.run_sync(self._store.is_reachable)
            answers["store"] = REACHABLE if usable else "unreachable"
        return answers
