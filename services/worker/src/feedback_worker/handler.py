"""The feedback handler: message → job → prompt → LLM → result → every delivery channel, with
the request's record kept at clear points on the way (records.py).

Nothing here knows about visibility, receive counts or threads (that is `runner.py`); failures
leave as the types in `errors.py`, each of which the runner maps to one queue action.
"""

import logging
import time
from datetime import datetime

from llm_common.contracts import FeedbackResult
from llm_common.requests_store import RequestState
from llm_common.telemetry import debug_text, log_context, names
from llm_common.telemetry.names import DeadLetterReason
from opentelemetry import trace

from feedback_worker.delivery import Delivery, DeliveryReport
from feedback_worker.errors import InvalidMessage, LlmUnavailable
from feedback_worker.jobs import Job, read_job, refuse_if_expired
from feedback_worker.llm import Feedback, FeedbackWriter
from feedback_worker.llm_gate import LlmGate
from feedback_worker.prompt import PromptTemplate
from feedback_worker.records import Progress, RequestRecords
from feedback_worker.slots import Place
from feedback_worker.source import QueueMessage

log = logging.getLogger(__name__)

CALLS_PER_RECEIVE = 3
"""LLM calls one receive of a message may make while the gate keeps closing on them."""


class FeedbackHandler:
    def __init__(
        self,
        writer: FeedbackWriter,
        prompt: PromptTemplate,
        delivery: Delivery,
        records: RequestRecords,
        gate: LlmGate | None = None,
    ) -> None:
        self._records = records
        self._writer = writer
        self._prompt = prompt
        self._delivery = delivery
        self._gate = gate

    @property
    def channel_names(self) -> list[str]:
        return self._delivery.channel_names

    async def handle(self, message: QueueMessage, place: Place) -> None:
        job = read_job(message)
        span = trace.get_current_span()
        span.set_attribute(names.REQUEST_ID_ATTRIBUTE, job.request_id)
        span.set_attribute(names.MEMBER_ID_ATTRIBUTE, job.request.member_id)
        with log_context(request_id=job.request_id, member_id=job.request.member_id):
            started = time.monotonic()
            progress = await self._records.start(job, message)
            if progress.finished:
                log.info("request %s has ended already: nothing to do", job.request_id)
                return
            if progress.content is None:
                refuse_if_expired(job)
                # Stored before its delivery: a delivery retry sends this very text.
                feedback = await self._write(job, message, place)
                progress = await self._records.generated(
                    job, feedback.text, message.receives, feedback.usage
                )
                if progress.finished:
                    log.info("request %s ended while its result was written", job.request_id)
                    return
            await self._deliver(job, progress)
            log.info(
                "request %s delivered in %.1fs (receive %d)",
                job.request_id,
                time.monotonic() - started,
                message.receives,
            )

    async def _deliver(self, job: Job, progress: Progress) -> None:
        """The stored result to every channel that has not taken it, recorded `delivered` as
        soon as one has (the rest are retried meanwhile) and again once the delivery ends."""
        assert progress.content is not None
        deadline = self._delivery.deadline(progress.generated_at)

        async def partly_delivered(report: DeliveryReport) -> None:
            await self._records.partly_delivered(job, report.after(progress.taken))

        report = await self._delivery.deliver(
            self._result(job, progress.content), deadline, progress.taken, partly_delivered
        )
        await self._records.delivered(job, report.after(progress.taken), deadline)

    async def dead_lettered(
        self, message: QueueMessage, reason: str, cause: DeadLetterReason
    ) -> None:
        """The runner gave the message up: the request ends `failed` (`expired` past its
        deadline), and the backend gets a failure notice when they are on."""
        try:
            job = read_job(message)
        except InvalidMessage:
            return  # no request to speak of
        state = RequestState.EXPIRED if cause is DeadLetterReason.EXPIRED else RequestState.FAILED
        with log_context(request_id=job.request_id, member_id=job.request.member_id):
            await self._records.ended(job, state, reason)

    async def _write(self, job: Job, message: QueueMessage, place: Place) -> Feedback:
        """The LLM's feedback; the LLM slot is held only for the call itself, and before the
        first one for the `generating` write a cancel races (RequestCancelled if it lost).

        With the gate, a call that fails because the LLM cannot take calls now (the gate
        closes) is tried again once the gate lets it, the message held meanwhile: returning it
        to the queue would spend one of its receives on the LLM's outage, and one replica of two
        failing every other call sent 7-8 of 40 requests to the DLQ that way. After
        CALLS_PER_RECEIVE calls it goes back to the queue all the same, so a message is not
        held for ever by a pod that cannot reach an LLM its peers can."""
        prompt = self._prompt.render(job.request)
        call = 0
        while True:
            call += 1
            await place.start_work()
            if call == 1:  # later calls of this receive find it `generating` already
                await self._records.generating(job, message.receives)
            log.info(
                "request %s (member %d, message %s, receive %d, call %d): asking the LLM",
                job.request_id,
                job.request.member_id,
                message.message_id,
                message.receives,
                call,
            )
            try:
                feedback = await self._writer.write(prompt)
            except LlmUnavailable as failure:
                if self._gate is None:
                    raise
                # The gate decides whether other messages may try the LLM before it answers.
                self._gate.call_failed(failure)
                if failure.gate_reason is None or call == CALLS_PER_RECEIVE:
                    raise
                log.warning("request %s: %s; waits for the LLM gate", job.request_id, failure)
                place.stop_work()
                continue
            if self._gate is not None:
                self._gate.call_answered()
            await place.finish_work()
            debug_text(log, "generated", feedback.text)
            return feedback

    @staticmethod
    def _result(job: Job, content: str) -> FeedbackResult:
        return FeedbackResult(
            member_id=job.request.member_id,
            content=content,
            # The backend reads a zone-less LocalDateTime: the worker's local time (set TZ).
            timestamp=datetime.now(),
            request_id=job.request_id,
        )
