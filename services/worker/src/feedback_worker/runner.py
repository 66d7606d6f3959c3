"""The runner: takes messages from a `MessageSource`, hands each to a `Handler`, settles it.

It knows the queue and nothing of the jobs, as arq's and dramatiq's workers do. One message's
life here: a receive loop reserves slots and receives (`slots.py`); the heartbeat keeps the
message hidden while it is held (`heartbeat.py`); the handler does the work, telling its
`Place` when the scarce call starts and ends; its outcome maps to one settle:

    returns          → delete
    Skip             → delete, counted by its reason (nothing is to be done for it, ever)
    DeadLetter       → the DLQ now, with the reason (`on_dead_letter` is told first)
    RetryLater       → back to the queue after a growing delay (on its last allowed receive,
                       its earlier copies' receives counted: the DLQ, with the reason,
                       `on_dead_letter` told first; SQS's redrive would move it without one)
    anything else    → logged, then as RetryLater

A message is worked once at a time: a copy received again while it is held (after a renewal
failed, say) is recognised by its message id, and only its newest receipt handle is used from
then on. On SIGTERM (`stop`) no more receives start; messages still waiting for a work slot go
back to the queue at once; the rest may finish within the drain grace, then go back too.
Whatever goes back unworked goes through `MessageSource.hand_back`, which never spends a
message's last receive: that receive would let SQS's redrive move it to the DLQ silently.

A `Gate` (for feedback: the LLM gate, `llm_gate.py`) may hold the receives: while it says no
nothing is received, and what is held (a receive begun before it closed brings some too) waits
for a work slot, which a closed gate does not give (`Bounds.close`). Handing those messages
back would spend a receive of each for nothing, and the next open receive would take them again
(21 receives of 13 messages, none worked, against vLLM on CPU failing at once).

`run(burst=True)` returns once the source has nothing visible and nothing is held, as arq's
burst mode does: tests run a queue to its end without sleeps.
"""

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from llm_common.telemetry import (
    extract_trace_context,
    messaging,
    metrics,
    names,
    queue_wait_span,
    record_error,
)
from llm_common.telemetry.names import DeadLetterReason, DrainOutcome
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from feedback_worker.backoff import backoff_delay
from feedback_worker.batching import MAX_BATCH
from feedback_worker.errors import DeadLetter, RetryLater, Skip
from feedback_worker.heartbeat import Heartbeat
from feedback_worker.settings import MAX_VISIBILITY_SECONDS
from feedback_worker.slots import Bounds, Place, Stage
from feedback_worker.source import MessageSource, QueueMessage, SourceError

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

T = TypeVar("T")

# When the queue itself cannot be reached, polls back off from 1 s to 30 s.
RECEIVE_RETRY_BASE_SECONDS = 1.0
RECEIVE_RETRY_MAX_SECONDS = 30.0
MAX_RECEIVE_LOOPS = 8


class Gate(Protocol):
    """Whether messages may be received now (see the module docstring)."""

    @property
    def receiving(self) -> bool: ...

    async def wait_receiving(self) -> None: ...


DeadLetterHook = Callable[[QueueMessage, str, DeadLetterReason], Awaitable[None]]
"""Told (message, reason, cause) when the runner gives a message up, before it moves to the DLQ:
the feedback handler ends the request's record there."""


class Handler(Protocol):
    async def handle(self, message: QueueMessage, place: Place) -> None:
        """Do the message's work; raise Skip, RetryLater or DeadLetter (feedback_worker.errors).

        `await place.start_work()` before the scarce call and `await place.finish_work()` once
        it is done: the runner keeps that many calls going and frees the slot for the next
        message while this one finishes."""


@dataclass(frozen=True)
class RunnerConfig:
    concurrency: int
    """Messages at work at once."""
    prefetch: int
    """Messages received ahead of a free work slot."""
    wait_seconds: int
    """Long-poll wait of each receive."""
    visibility_timeout: int
    """Set on every receive; the heartbeat renews it every third of it."""
    retry_delay_seconds: float
    retry_max_delay_seconds: float
    drain_grace_seconds: float

    @property
    def receive_loops(self) -> int:
        """How many receives may be open at once: one per ten slots, eight at most.

        A receive returns ten messages at most, so one loop alone would refill a wave of finished
        messages one round trip per ten while the LLM waits (measured with `make bench`: 0.7 of
        the ideal throughput at 64 in flight)."""
        return min(MAX_RECEIVE_LOOPS, math.ceil((self.concurrency + self.prefetch) / MAX_BATCH))


@dataclass
class _Held:
    """A message the runner holds: its newest copy, its place, the task working it."""

    message: QueueMessage
    place: Place
    task: "asyncio.Task[None] | None" = None


class Runner:
    def __init__(
        self,
        source: MessageSource,
        handler: Handler,
        config: RunnerConfig,
        bounds: Bounds | None = None,
        gate: Gate | None = None,
        *,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self._source = source
        self._handler = handler
        self._config = config
        self._bounds = bounds or Bounds(config.concurrency, config.prefetch)
        self._gate = gate
        self._on_dead_letter = on_dead_letter
        self._heartbeat = Heartbeat(source, config.visibility_timeout)
        self._held: dict[str, _Held] = {}
        """Message id → the message held under it."""
        self._stopping = asyncio.Event()
        self._left = asyncio.Event()
        """Set each time a held message leaves (burst mode waits for it)."""

    def stop(self) -> None:
        """Stop receiving and drain (SIGTERM, SIGINT). Safe to call more than once."""
        if not self._stopping.is_set():
            log.info("stop requested: no more receives, finishing what is in flight")
            self._stopping.set()

    async def run(self, *, burst: bool = False) -> None:
        """Work until `stop()` (or, with `burst`, until the queue is empty), then drain."""
        heartbeat = asyncio.create_task(self._heartbeat.run(), name="heartbeat")
        try:
            loops = self._config.receive_loops
            await asyncio.gather(*(self._receive_loop(burst) for _ in range(loops)))
            await self._drain()
        finally:
            self._heartbeat.stop()
            await heartbeat

    async def _admitted(self) -> int:
        """Slots for one receive, reserved while the gate (if any) lets receives happen: the
        one place where the gate holds the runner. No receive may burn a message's receive
        count while the work cannot be done."""
        while True:
            if self._gate is not None:
                await self._gate.wait_receiving()
            reserved = await self._bounds.received.reserve(MAX_BATCH)
            if self._gate is None or self._gate.receiving:
                return reserved
            self._bounds.received.release(reserved)  # it closed while this loop waited

    async def _receive_loop(self, burst: bool) -> None:
        wait_seconds = 0 if burst else self._config.wait_seconds
        failed_receives = 0
        while not self._stopping.is_set():
            reserved = await self._unless_stopped(self._admitted())
            if reserved is None:
                return
            try:
                messages = await self._unless_stopped(
                    self._source.receive(reserved, wait_seconds, self._config.visibility_timeout)
                )
            except SourceError as error:
                self._bounds.received.release(reserved)
                failed_receives += 1
                await self._pause_after_failed_receive(failed_receives, error)
                continue
            if messages is None:
                self._bounds.received.release(reserved)
                return
            failed_receives = 0
            self._bounds.received.release(reserved - len(messages))
            for message in messages:
                self._hold(message)
            if burst and not messages:
                if not self._held:
                    return
                self._left.clear()
                await self._unless_stopped(self._left.wait())

    async def _unless_stopped(self, work: Coroutine[Any, Any, T]) -> T | None:
        """`work`'s result, or None (and `work` cancelled) if a stop comes first."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

    async def _pause_after_failed_receive(self, failed_receives: int, error: Exception) -> None:
        delay = backoff_delay(
            failed_receives, RECEIVE_RETRY_BASE_SECONDS, RECEIVE_RETRY_MAX_SECONDS
        )
        log.error("receive from %s failed (%s); next try in %.1fs", self._source.name, error, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    def _hold(self, message: QueueMessage) -> None:
        held = self._held.get(message.message_id)
        if held is not None:
            # Received again while held: keep one worker on it, settle with the newest handle.
            log.warning(
                "message %s received again (receive %d) while still held: not started twice",
                message.message_id,
                message.receive_count,
            )
            held.message = message
            self._heartbeat.track(message)
            self._bounds.received.release()
            return
        held = _Held(message, self._bounds.place())
        self._held[message.message_id] = held
        self._heartbeat.track(message)
        held.task = asyncio.create_task(self._work(held), name=f"message {message.message_id}")
        held.task.add_done_callback(lambda _: self._release(held))

    def _release(self, held: _Held) -> None:
        self._held.pop(held.message.message_id, None)
        self._heartbeat.forget(held.message.message_id)
        held.place.leave()
        self._left.set()

    async def _work(self, held: _Held) -> None:
        message = held.message
        # This hop of the request's trace: the sender put its context in the message
        # attributes; a message without one starts a new trace.
        context = extract_trace_context(message.attributes)
        waited = queue_wait_span(message.as_sqs_message(), context, self._source.name)
        if waited is not None:
            metrics.WORKER_QUEUE_WAIT.observe(waited)
        with (
            metrics.WORKER_MESSAGES_IN_FLIGHT.track_inprogress(),
            tracer.start_as_current_span(
                names.PROCESS_SPAN,
                context=context,
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.message.id": message.message_id,
                    **messaging.messaging_attributes(messaging.PROCESS, self._source.name),
                },
            ) as span,
        ):
            try:
                await self._handler.handle(message, held.place)
            except Skip as skipped:
                await self._skip(held, skipped)
            except DeadLetter as failure:
                record_error(span, failure)
                await self._dead_letter(held, str(failure), failure.cause)
            except RetryLater as failure:
                record_error(span, failure)
                await self._retry_later(held, failure)
            except Exception as error:
                log.exception("message %s: unexpected error", message.message_id)
                record_error(span, error)
                await self._retry_later(held, RetryLater("unexpected error"))
            else:
                await self._settle(held, "delete", self._source.delete)

    async def _skip(self, held: _Held, skipped: Skip) -> None:
        log.info("message %s deleted unworked: %s", held.message.message_id, skipped)
        if await self._settle(held, "delete", self._source.delete):
            metrics.WORKER_SKIPS.labels(skipped.reason).inc()

    async def _dead_letter(self, held: _Held, reason: str, cause: DeadLetterReason) -> None:
        log.error("message %s goes to the DLQ: %s", held.message.message_id, reason)
        if self._on_dead_letter is not None:
            await self._on_dead_letter(held.message, reason, cause)

        async def move(message: QueueMessage) -> None:
            if message is moved_copy:
                await self._source.dead_letter(message, reason)
            else:  # a newer copy came in meanwhile: the DLQ has the body already
                await self._source.delete(message)

        moved_copy = held.message
        if await self._settle(held, "move to the DLQ", move):
            metrics.WORKER_DLQ_SENDS.labels(cause).inc()

    async def _retry_later(self, held: _Held, failure: RetryLater) -> None:
        message = held.message
        limit = self._source.max_receive_count
        if limit is not None and message.receives >= limit:
            reason = f"gave up after {message.receives} receives: {failure}"
            await self._dead_letter(held, reason, DeadLetterReason.RETRIES_EXHAUSTED)
            return
        if failure.operation is not None:
            metrics.WORKER_RETRIES.labels(failure.operation).inc()
        delay = backoff_delay(
            message.receives,
            self._config.retry_delay_seconds,
            self._config.retry_max_delay_seconds,
        )
        seconds = min(round(max(delay, failure.retry_after or 0)), MAX_VISIBILITY_SECONDS)
        log.warning(
            "message %s (receive %d): %s; back in the queue in %ds",
            message.message_id,
            message.receives,
            failure,
            seconds,
        )

        async def hand_back(copy: QueueMessage) -> None:
            await self._source.change_visibility([copy], seconds)

        await self._settle(held, "return to the queue", hand_back)

    async def _settle(
        self, held: _Held, action: str, operation: Callable[[QueueMessage], Awaitable[None]]
    ) -> bool:
        """Stop renewing `held`, then settle it with its newest copy; False if the queue failed.

        A copy received while the settle was on its way would make the settle a no-op on real
        SQS (an older receipt handle): the settle is repeated with the newest one."""
        self._heartbeat.forget(held.message.message_id)
        while True:
            copy = held.message
            try:
                await operation(copy)
            except SourceError as error:
                log.error(
                    "message %s: could not %s (%s); it comes back when its visibility ends",
                    copy.message_id,
                    action,
                    error,
                )
                return False
            if held.message is copy:
                return True

    async def _drain(self) -> None:
        await self._release_unstarted()
        unfinished: set[asyncio.Task[None]] = set()
        tasks = {held.task for held in self._held.values() if held.task is not None}
        if tasks:
            grace = self._config.drain_grace_seconds
            log.info("draining %d in-flight message(s), %.1fs grace", len(tasks), grace)
            _, unfinished = await asyncio.wait(tasks, timeout=grace)
        leftover = [held.message for held in self._held.values() if held.task in unfinished]
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished)
        outcome = DrainOutcome.TIMED_OUT if leftover else DrainOutcome.COMPLETED
        metrics.WORKER_DRAINS.labels(outcome).inc()
        if leftover:
            log.warning("grace over: %d unfinished message(s) handed back", len(leftover))
            await self._hand_back(leftover)

    async def _release_unstarted(self) -> None:
        """Give back at once what is still waiting for a work slot (the pod is going away):
        another worker can start those messages now instead of after the grace period."""
        unstarted = (Stage.RECEIVED, Stage.WAITING)
        waiting = [held for held in self._held.values() if held.place.stage in unstarted]
        if not waiting:
            return
        messages = [held.message for held in waiting]
        tasks = [held.task for held in waiting if held.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        log.info("the worker is stopping: %d message(s) not yet at work handed back", len(messages))
        await self._hand_back(messages)

    async def _hand_back(self, messages: list[QueueMessage]) -> None:
        for message in messages:
            self._heartbeat.forget(message.message_id)
        # No renewal may land after this release and hide the messages again.
        await self._heartbeat.quiet()
        try:
            await self._source.hand_back(messages)
        except SourceError as error:
            log.error(
                "could not release %d message(s) (%s): they come back when their visibility ends",
                len(messages),
                error,
            )
