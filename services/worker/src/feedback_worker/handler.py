"""The feedback handler: message → job → prompt → LLM → result → every delivery channel.

Nothing here knows about visibility, receive counts or threads (that is `runner.py`); failures
leave as the types in `errors.py`, each of which the runner maps to one queue action.
"""

import asyncio
import functools
import logging
import time
from datetime import UTC, datetime

import anyio.to_thread
from llm_common.contracts import FeedbackResult
from llm_common.requests_store import RequestRecord, RequestStore, StateConflict, StoreUnavailable
from llm_common.telemetry import debug_text, log_context, names
from opentelemetry import trace

from feedback_worker.delivery import Channel
from feedback_worker.errors import DeadLetter, RetryLater
from feedback_worker.jobs import Job, read_job
from feedback_worker.llm import FeedbackWriter
from feedback_worker.prompt import PromptTemplate
from feedback_worker.slots import Place
from feedback_worker.source import QueueMessage

log = logging.getLogger(__name__)


class FeedbackHandler:
    def __init__(
        self,
        writer: FeedbackWriter,
        prompt: PromptTemplate,
        channels: list[Channel],
        store: RequestStore | None = None,
    ) -> None:
        self._store = store
        self._writer = writer
        self._prompt = prompt
        self._channels = channels

    @property
    def channel_names(self) -> list[str]:
        return [channel.name for channel in self._channels]

    async def handle(self, message: QueueMessage, place: Place) -> None:
        job = read_job(message)
        span = trace.get_current_span()
        span.set_attribute(names.REQUEST_ID_ATTRIBUTE, job.request_id)
        span.set_attribute(names.MEMBER_ID_ATTRIBUTE, job.request.member_id)
        with log_context(request_id=job.request_id, member_id=job.request.member_id):
            started = time.monotonic()
            record = await self._start(job)
            if record is not None and record.is_terminal:
                log.info("request %s already %s: not worked again", job.request_id, record.state)
                return
            await self._refuse_if_expired(job)
            # A delivery retry sends the stored text: the LLM is asked once per request.
            content = record.content if record is not None and record.content else None
            if content is None:
                content = await self._write(job, message, place)
                await self._record(self._store_call("store_result", job.request_id, content))
            try:
                await self._deliver(self._result(job, content))
            except DeadLetter as failure:
                await self._record(self._store_call("mark_failed", job.request_id, str(failure)))
                raise
            await self._record(
                self._store_call("mark_delivered", job.request_id, self.channel_names, "delivered")
            )
            log.info(
                "request %s delivered in %.1fs (receive %d)",
                job.request_id,
                time.monotonic() - started,
                message.receive_count,
            )

    async def _start(self, job: Job) -> RequestRecord | None:
        """`processing` in the store, conditionally: a request that has ended (a second copy of
        its message, queued by an ingest retry after SQS's 5-minute window) makes no second job.
        None when there is no store or no record (a message the backend published itself)."""
        if self._store is None:
            return None
        try:
            return await anyio.to_thread.run_sync(self._store.start_processing, job.request_id)
        except StateConflict as conflict:
            return conflict.current
        except StoreUnavailable as error:
            raise RetryLater(f"request store unavailable: {error}") from error

    async def _refuse_if_expired(self, job: Job) -> None:
        deadline = job.request.deadline
        if deadline is None or deadline.replace(tzinfo=UTC) > datetime.now(UTC):
            return
        reason = f"deadline {deadline.isoformat()} passed before the LLM was asked"
        await self._record(self._store_call("mark_expired", job.request_id, reason))
        raise DeadLetter(reason)

    def _store_call(self, method: str, *args: object) -> functools.partial[object] | None:
        if self._store is None:
            return None
        return functools.partial(getattr(self._store, method), *args)

    @staticmethod
    async def _record(call: functools.partial[object] | None) -> None:
        """A state change; a store outage here is logged, not fatal: the delivery it records
        has happened (or not) either way, and a redelivered message records it again."""
        if call is None:
            return
        try:
            await anyio.to_thread.run_sync(call)
        except (StoreUnavailable, StateConflict) as error:
            log.warning("request store not updated (%s): %s", call.func.__name__, error)

    async def _write(self, job: Job, message: QueueMessage, place: Place) -> str:
        """The LLM's feedback; the LLM slot is held only for the call itself."""
        await place.start_work()
        log.info(
            "request %s (member %d, message %s, receive %d): asking the LLM",
            job.request_id,
            job.request.member_id,
            message.message_id,
            message.receive_count,
        )
        content = await self._writer.write(self._prompt.render(job.request))
        await place.finish_work()
        debug_text(log, "generated", content)
        return content

    @staticmethod
    def _result(job: Job, content: str) -> FeedbackResult:
        return FeedbackResult(
            member_id=job.request.member_id,
            content=content,
            # The backend reads a zone-less LocalDateTime: the worker's local time (set TZ).
            timestamp=datetime.now(),
            request_id=job.request_id,
        )

    async def _deliver(self, result: FeedbackResult) -> None:
        """Every channel at once: the callback does not wait for the result queue's send (make
        bench measured that wait in the delivery hop). Each channel runs to its end; a permanent
        failure outranks a transient one, as it would have one after the other."""
        outcomes = await asyncio.gather(
            *(channel.send(result) for channel in self._channels), return_exceptions=True
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            raise next((f for f in failures if isinstance(f, DeadLetter)), failures[0])
