"""Readiness: the service is ready when its queue answers."""

import math
import time

import anyio

from feedback_ingest.queue import FeedbackQueue

READINESS_CACHE_SECONDS = 5.0


class ReadinessProbe:
    """Asks SQS at most once per `cache_seconds`: every replica is probed every few seconds,
    and those probes must not turn into a steady load on the queue."""

    def __init__(self, queue: FeedbackQueue, cache_seconds: float = READINESS_CACHE_SECONDS):
        self._queue = queue
        self._cache_seconds = cache_seconds
        self._checked_at = -math.inf
        self._ready = False
        # One check at a time: probes that arrive meanwhile wait for its answer.
        self._lock = anyio.Lock()

    async def is_ready(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self._cache_seconds:
                self._ready = await self._queue.is_reachable()
                self._checked_at = time.monotonic()
            return self._ready
