"""The worker loop: receive, write, deliver, delete, with many messages in flight.

Modelled on arq's Worker: one settings object, a bounded semaphore for concurrency, failures as
small exception types (RetryLater, DeadLetter) that each map to one queue action, and a drain on
SIGTERM.
"""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, ParamSpec

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from llm_common.contracts import FeedbackResult
from llm_common.telemetry import (
    debug_text,
    extract_trace_context,
    log_context,
    metrics,
    names,
    queue_wait_span,
    record_error,
)
from llm_common.telemetry.names import DeadLetterReason, DrainOutcome
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from feedback_worker.backoff import backoff_delay
from feedback_worker.delivery import Channel, channels_from_settings
from feedback_worker.errors import ConfigurationError, DeadLetter, InvalidMessage, RetryLater
from feedback_worker.heartbeat import Heartbeat
from feedback_worker.jobs import Job, read_job
from feedback_worker.llm import FeedbackWriter
from feedback_worker.poller import Poller
from feedback_worker.prompt import InvalidTemplate, PromptTemplate
from feedback_worker.settings import MAX_VISIBILITY_SECONDS, WorkerSettings
from feedback_worker.slots import Bounds, Place, Stage
from feedback_worker.sqs import MAX_BATCH, FeedbackQueue, QueueMessage, Sqs, read_redrive_policy

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

P = ParamSpec("P")

# When SQS itself cannot be reached, polls back off from 1 s to 30 s.
RECEIVE_RETRY_BASE_SECONDS = 1.0
RECEIVE_RETRY_MAX_SECONDS = 30.0


MAX_RECEIVE_LOOPS = 8


def receive_loops_for(concurrency: int) -> int:
    """How many long polls may be open at once: one per ten slots, eight at most."""
    return min(MAX_RECEIVE_LOOPS, math.ceil(concurrency / MAX_BATCH))


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        sqs: Sqs,
        queue: FeedbackQueue,
        writer: FeedbackWriter,
        prompt: PromptTemplate,
        channels: list[Channel],
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self._sqs = sqs
        self._queue = queue
        self._writer = writer
        self._prompt = prompt
        self._channels = channels
        self._http = http
        self._bounds = Bounds(settings.worker_concurrency, settings.prefetch)
        self._poller = Poller(queue, settings.sqs_wait_seconds, settings.visibility_timeout_seconds)
        self._heartbeat = Heartbeat(queue, settings.visibility_timeout_seconds)
        self._in_flight: dict[asyncio.Task[None], tuple[QueueMessage, Place]] = {}
        self._stopping = asyncio.Event()

    @classmethod
    async def create(cls, settings: WorkerSettings) -> "Worker":
        """Build every client; find the DLQ. Raises ConfigurationError when it cannot work."""
        try:
            prompt = PromptTemplate.from_file(settings.prompt_template_file)
        except (OSError, InvalidTemplate) as error:
            raise ConfigurationError(f"PROMPT_TEMPLATE_FILE: {error}") from error
        sqs = Sqs.for_messages(settings.aws_region, settings.most_held)
        try:
            queue = await _feedback_queue(settings, sqs)
        except BaseException:
            sqs.close()
            raise
        http = httpx.AsyncClient(
            timeout=settings.callback_timeout_seconds,
            # A redirect would take the signed result to a host CALLBACK_ALLOWED_HOSTS never
            # allowed: a 3xx is an unexpected answer instead.
            follow_redirects=False,
            limits=httpx.Limits(max_connections=settings.worker_concurrency),
        )
        return cls(
            settings,
            sqs,
            queue,
            FeedbackWriter.from_settings(settings),
            prompt,
            channels_from_settings(settings, sqs, http),
            http,
        )

    def stop(self) -> None:
        """Stop receiving and drain (SIGTERM, SIGINT). Safe to call more than once."""
        if not self._stopping.is_set():
            log.info("stop requested: no more receives, finishing what is in flight")
            self._stopping.set()

    async def run(self) -> None:
        """Work until `stop()`, then drain and close every client."""
        log.info(
            "worker up: queue %s, DLQ %s, %d in flight at most, LLM %s (%s), delivering to %s",
            self._queue.url,
            self._queue.dead_letter_url,
            self.settings.worker_concurrency,
            self.settings.llm_base_url,
            self.settings.llm_model,
            " and ".join(channel.name for channel in self._channels),
        )
        heartbeat = asyncio.create_task(self._heartbeat.run(), name="heartbeat")
        try:
            await self._receive_until_stopped()
            await self._drain()
        finally:
            await self._heartbeat.stop()
            await heartbeat
            await self._close()
        log.info("worker stopped")

    async def _receive_until_stopped(self) -> None:
        # Several receive loops, one per ten slots: a receive returns ten messages at most, so
        # one loop alone would refill a wave of finished messages one round trip per ten while
        # the LLM waits (measured with `make bench`: 0.7 of the ideal throughput at 64 in flight).
        loops = receive_loops_for(self.settings.worker_concurrency)
        await asyncio.gather(*(self._receive_loop() for _ in range(loops)))

    async def _receive_loop(self) -> None:
        stop = asyncio.create_task(self._stopping.wait())
        failed_polls = 0
        try:
            while True:
                reserving = asyncio.create_task(self._bounds.received.reserve(MAX_BATCH))
                if not await self._before_stop(reserving, stop):
                    reserving.cancel()
                    return
                reserved = reserving.result()
                poll = self._poller.start(reserved)
                if not await self._before_stop(poll.future, stop):
                    await self._poller.abandon(poll)
                    return
                try:
                    messages = poll.future.result()
                except Exception as error:
                    self._bounds.received.release(reserved)
                    failed_polls += 1
                    await self._pause_after_failed_poll(failed_polls, error)
                    continue
                failed_polls = 0
                self._bounds.received.release(reserved - len(messages))
                for message in messages:
                    self._start(message)
        finally:
            stop.cancel()

    @staticmethod
    async def _before_stop(work: "asyncio.Future[Any]", stop: "asyncio.Task[bool]") -> bool:
        """Wait for `work` or `stop`; True if `work` finished and no stop was requested."""
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        return not stop.done()

    async def _pause_after_failed_poll(self, failed_polls: int, error: Exception) -> None:
        delay = backoff_delay(failed_polls, RECEIVE_RETRY_BASE_SECONDS, RECEIVE_RETRY_MAX_SECONDS)
        log.error("receive from %s failed (%s); next poll in %.1fs", self._queue.url, error, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    def _start(self, message: QueueMessage) -> None:
        self._heartbeat.track(message)
        place = self._bounds.place()
        task = asyncio.create_task(
            self._process(message, place), name=f"message {message.message_id}"
        )
        self._in_flight[task] = (message, place)

        def finished(task: "asyncio.Task[None]") -> None:
            self._in_flight.pop(task, None)
            place.leave()

        task.add_done_callback(finished)

    async def _process(self, message: QueueMessage, place: Place) -> None:
        # The worker's hop of the request's trace: ingest put its context in the message
        # attributes (docs/observability.md, Traces); a message without one starts a new trace.
        context = extract_trace_context(message.attributes)
        waited = queue_wait_span(message.as_sqs_message(), context, self._queue.name)
        if waited is not None:
            metrics.WORKER_QUEUE_WAIT.observe(waited)
        with (
            metrics.WORKER_MESSAGES_IN_FLIGHT.track_inprogress(),
            tracer.start_as_current_span(
                names.PROCESS_SPAN,
                context=context,
                kind=SpanKind.CONSUMER,
                attributes={"messaging.message.id": message.message_id},
            ) as span,
        ):
            try:
                job = read_job(message)
            except InvalidMessage as failure:
                record_error(span, failure)
                await self._dead_letter(message, str(failure), DeadLetterReason.INVALID_MESSAGE)
                return
            span.set_attribute(names.REQUEST_ID_ATTRIBUTE, job.request_id)
            span.set_attribute(names.MEMBER_ID_ATTRIBUTE, job.request.member_id)
            with log_context(request_id=job.request_id, member_id=job.request.member_id):
                await self._handle(message, job, span, place)

    async def _handle(self, message: QueueMessage, job: Job, span: Span, place: Place) -> None:
        started = time.monotonic()
        try:
            await self._answer(message, job, place)
        except DeadLetter as failure:
            record_error(span, failure)
            await self._dead_letter(message, str(failure), DeadLetterReason.PERMANENT_FAILURE)
        except RetryLater as failure:
            record_error(span, failure)
            await self._retry_later(message, failure)
        except Exception as error:
            log.exception("message %s: unexpected error", message.message_id)
            record_error(span, error)
            await self._retry_later(message, RetryLater("unexpected error"))
        else:
            await self._finish(message, "delete", self._queue.delete, message)
            log.info(
                "request %s delivered in %.1fs (receive %d)",
                job.request_id,
                time.monotonic() - started,
                message.receive_count,
            )

    async def _answer(self, message: QueueMessage, job: Job, place: Place) -> None:
        """Write the feedback, free the LLM slot for the next message, deliver to every channel."""
        await place.to_llm()
        log.info(
            "request %s (member %d, message %s, receive %d): asking the LLM",
            job.request_id,
            job.request.member_id,
            message.message_id,
            message.receive_count,
        )
        content = await self._writer.write(self._prompt.render(job.request))
        await place.to_delivery()
        debug_text(log, "generated", content)
        result = FeedbackResult(
            member_id=job.request.member_id,
            content=content,
            # The backend reads a zone-less LocalDateTime: the worker's local time (set TZ).
            timestamp=datetime.now(),
            request_id=job.request_id,
        )
        # Every channel at once: the callback does not wait for the result queue's send (make
        # bench measured that wait in the delivery hop). Each channel runs to its end; a
        # permanent failure outranks a transient one, as it would have one after the other.
        outcomes = await asyncio.gather(
            *(channel.send(result) for channel in self._channels), return_exceptions=True
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            raise next((f for f in failures if isinstance(f, DeadLetter)), failures[0])

    async def _dead_letter(
        self, message: QueueMessage, reason: str, cause: DeadLetterReason
    ) -> None:
        log.error("message %s goes to the DLQ: %s", message.message_id, reason)
        moved = await self._finish(
            message, "move to the DLQ", self._queue.dead_letter, message, reason
        )
        if moved:
            metrics.WORKER_DLQ_SENDS.labels(cause).inc()

    async def _retry_later(self, message: QueueMessage, failure: RetryLater) -> None:
        if self._queue.is_last_receive(message):
            # Left to SQS's redrive, the message would reach the DLQ without its reason.
            reason = f"gave up after {message.receive_count} receives: {failure}"
            await self._dead_letter(message, reason, DeadLetterReason.RETRIES_EXHAUSTED)
            return
        if failure.operation is not None:
            metrics.WORKER_RETRIES.labels(failure.operation).inc()
        delay = backoff_delay(
            message.receive_count,
            self.settings.retry_delay_seconds,
            self.settings.retry_max_delay_seconds,
        )
        seconds = min(round(max(delay, failure.retry_after or 0)), MAX_VISIBILITY_SECONDS)
        log.warning(
            "message %s (receive %d): %s; back in the queue in %ds",
            message.message_id,
            message.receive_count,
            failure,
            seconds,
        )
        await self._finish(
            message, "return to the queue", self._queue.return_after, message, seconds
        )

    async def _finish(
        self,
        message: QueueMessage,
        action: str,
        operation: Callable[P, Awaitable[None]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> bool:
        """Stop the heartbeat for `message`, then settle it on the queue; False if SQS failed."""
        await self._heartbeat.forget(message)
        try:
            await operation(*args, **kwargs)
        except (BotoCoreError, ClientError) as error:
            log.error(
                "message %s: could not %s (%s); it comes back when its visibility ends",
                message.message_id,
                action,
                error,
            )
            return False
        return True

    async def _drain(self) -> None:
        await self._release_unstarted()
        unfinished: set[asyncio.Task[None]] = set()
        if self._in_flight:
            grace = self.settings.drain_grace_seconds
            log.info("draining %d in-flight message(s), %.1fs grace", len(self._in_flight), grace)
            _, unfinished = await asyncio.wait(set(self._in_flight), timeout=grace)
        leftover = [self._in_flight[task][0] for task in unfinished]
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished)
        # No renewal may land after the release below and hide the messages again.
        await self._heartbeat.stop()
        outcome = DrainOutcome.TIMED_OUT if leftover else DrainOutcome.COMPLETED
        metrics.WORKER_DRAINS.labels(outcome).inc()
        if leftover:
            log.warning("grace over: %d unfinished message(s) made visible again", len(leftover))
            await self._make_visible(leftover)

    async def _release_unstarted(self) -> None:
        """Give back at once what is still waiting for an LLM slot: the pod is going away, and
        another worker can start those messages now instead of after the grace period."""
        waiting = {
            task: message
            for task, (message, place) in self._in_flight.items()
            if place.stage is Stage.WAITING
        }
        if not waiting:
            return
        for task in waiting:
            task.cancel()
        await asyncio.wait(waiting)
        for message in waiting.values():
            await self._heartbeat.forget(message)
        log.info("%d message(s) not yet at the LLM made visible again", len(waiting))
        await self._make_visible(list(waiting.values()))

    async def _make_visible(self, messages: list[QueueMessage]) -> None:
        try:
            await self._queue.set_visibility(messages, 0)
        except (BotoCoreError, ClientError) as error:
            log.error(
                "could not release %d message(s) (%s): they come back when their visibility ends",
                len(messages),
                error,
            )

    async def _close(self) -> None:
        await self._writer.close()
        await self._http.aclose()
        await asyncio.to_thread(self._sqs.close)


async def _feedback_queue(settings: WorkerSettings, sqs: Sqs) -> FeedbackQueue:
    redrive = await sqs.call(read_redrive_policy, sqs.client, settings.feedback_queue_url)
    dead_letter_url = settings.feedback_dlq_url or redrive.dead_letter_url
    if not dead_letter_url:
        raise ConfigurationError(
            "no DLQ for poison messages: set FEEDBACK_DLQ_URL or give the feedback queue a "
            "RedrivePolicy"
        )
    return FeedbackQueue(
        sqs, settings.feedback_queue_url, dead_letter_url, redrive.max_receive_count
    )
