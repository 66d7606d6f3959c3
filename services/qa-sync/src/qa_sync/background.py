"""The server's background work: one sync worker fed by webhooks and the poller, and the
periodic reconcile. The blocking work runs in threads; the loops survive every error."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from qa_sync.components import Components
from qa_sync.telemetry import set_job_counts

log = logging.getLogger(__name__)


class BackgroundWork:
    def __init__(self, components: Components) -> None:
        self._components = components
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def request_sync(self, batch_id: str) -> None:
        """Sync this batch's job soon (once, however often it is asked for meanwhile)."""
        if batch_id not in self._queued:
            self._queued.add(batch_id)
            self._queue.put_nowait(batch_id)

    def start(self) -> None:
        settings = self._components.settings
        self._tasks = [
            asyncio.create_task(self._sync_worker(), name="sync-worker"),
            asyncio.create_task(
                _every(settings.poll_interval_seconds, self._poll, first_at_once=True),
                name="poller",
            ),
            asyncio.create_task(
                _every(settings.reconcile_interval_seconds, self._reconcile, first_at_once=False),
                name="reconciler",
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sync_worker(self) -> None:
        # One batch at a time per process: memory stays that of one streamed batch.
        while True:
            batch_id = await self._queue.get()
            self._queued.discard(batch_id)
            try:
                await asyncio.to_thread(self._sync_batch, batch_id)
            except Exception:
                log.exception("sync of batch %s failed", batch_id)

    def _sync_batch(self, batch_id: str) -> None:
        job = self._components.registry.find_by_batch(batch_id)
        if job is None:
            log.info("batch %s has no registered job; nothing to sync", batch_id)
            return
        self._components.syncer.sync(job)

    async def _poll(self) -> None:
        registry = self._components.registry
        set_job_counts(await asyncio.to_thread(registry.count_by_status))
        for job in await asyncio.to_thread(registry.pending):
            assert job.openai_batch_id is not None
            self.request_sync(job.openai_batch_id)

    async def _reconcile(self) -> None:
        report = await asyncio.to_thread(self._components.reconciler.run, True)
        if not report.healthy:
            log.error("reconcile left problems: %s", report.model_dump_json(include={"unrepaired"}))


async def _every(
    seconds: float, work: Callable[[], Awaitable[None]], *, first_at_once: bool
) -> None:
    if not first_at_once:
        await asyncio.sleep(seconds)
    while True:
        try:
            await work()
        except Exception:
            log.exception(
                "%s failed; trying again in %ss", getattr(work, "__name__", work), seconds
            )
        await asyncio.sleep(seconds)
