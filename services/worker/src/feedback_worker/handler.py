"""The feedback handler: message → job → prompt → LLM → result → every delivery channel.

Nothing here knows about visibility, receive counts or threads (that is `runner.py`); failures
leave as the types in `errors.py`, each of which the runner maps to one queue action.
"""

import asyncio
import logging
import time
from datetime import datetime

from llm_common.contracts import FeedbackResult
from llm_common.telemetry import debug_text, log_context, names
from opentelemetry import trace

from feedback_worker.delivery import Channel
from feedback_worker.errors import DeadLetter, LlmUnavailable
from feedback_worker.jobs import Job, read_job
from feedback_worker.llm import FeedbackWriter
from feedback_worker.llm_gate import LlmGate
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
        gate: LlmGate | None = None,
    ) -> None:
        self._writer = writer
        self._prompt = prompt
        self._channels = channels
        self._gate = gate

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
            content = await self._write(job, message, place)
            await self._deliver(self._result(job, content))
            log.info(
                "request %s delivered in %.1fs (receive %d)",
                job.request_id,
                time.monotonic() - started,
                message.receive_count,
            )

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
        try:
            content = await self._writer.write(self._prompt.render(job.request))
        except LlmUnavailable as failure:
            # The gate decides whether other messages may try the LLM before it answers again.
            if self._gate is not None:
                self._gate.call_failed(failure)
            raise
        if self._gate is not None:
            self._gate.call_answered()
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
