"""Deliver until delivered: every channel gets the result, retried within a budget of its own.

A callback receiver that is down (a backend deploy, an outage of an hour) must not send the
request back through the queue: each return would spend one of its receives, and the redrive
policy allows five. So the worker holds the message (the heartbeat keeps it hidden) and retries
the channels that have not taken the result yet, with a growing wait between rounds, until
DELIVERY_RETRY_SECONDS have passed since the result was generated. The LLM is never asked again:
the same text is sent each round. The request store's writes about the result are held within
the same budget (records.py).

Channels are not all or nothing: the request is delivered once any channel took the result (the
backend has it, and so the member). A channel that has not taken it is retried until the budget
ends, then given up (logged; the record lists it as `missing`); one that refused it for good
(400/404) is not retried. The request fails only when no channel took the result: every one
refused it, or the budget ended first.

A message held this way keeps its delivery slot, so a pod whose deliveries are stuck stops
taking new messages (slots.py): the backlog waits in the queue, not in memory.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from llm_common.contracts import FeedbackResult
from llm_common.telemetry import metrics
from llm_common.telemetry.names import DeliveryOutcome

from feedback_worker.backoff import backoff_delay
from feedback_worker.errors import DeadLetter, DeliveryBudgetSpent, DeliveryFailed

if TYPE_CHECKING:
    from feedback_worker.delivery import Channel

log = logging.getLogger(__name__)


class Clock(Protocol):
    """Wall time and waiting on it: the delivery budget's, which a test replaces to run an
    hour's outage without waiting for it (`Worker.create`'s seam)."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DeliveryBudget:
    seconds: float
    """From the result's generation to the last round."""
    first_delay: float
    max_delay: float
    now: Callable[[], datetime] = _now
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    """The clock and the wait: a test runs an hour's outage without waiting for it."""

    def deadline(self, generated_at: datetime | None) -> datetime:
        """When a result generated at `generated_at` (now when None) stops being retried."""
        return (generated_at or self.now()) + timedelta(seconds=self.seconds)

    def delay(
        self, round_: int, deadline: datetime, retry_after: float | None = None
    ) -> float | None:
        """The wait before round `round_ + 1`: backoff, at least `retry_after` (the other side
        asked for it), never past `deadline`; None once the deadline has passed."""
        left = (deadline - self.now()).total_seconds()
        if left <= 0:
            return None
        delay = backoff_delay(round_, self.first_delay, self.max_delay)
        return min(max(delay, retry_after or 0), left)


@dataclass(frozen=True)
class DeliveryReport:
    """Where the result went: the request is delivered when `taken` is not empty."""

    taken: tuple[str, ...]
    """The channels that took the result (a 409 counts: the receiver had it)."""
    missing: tuple[str, ...]
    """The channels that did not: still retried while the worker holds the message, given up
    once the budget ends, or refused for good."""
    outcome: DeliveryOutcome
    """DUPLICATE when a receiver had the result already (409), else DELIVERED."""

    def after(self, taken: Sequence[str], missing: Sequence[str] = ()) -> DeliveryReport:
        """This delivery on top of an earlier one that left `taken` and `missing` (a message
        back after a partial delivery, an operator's redeliver)."""
        now_taken = tuple(dict.fromkeys([*taken, *self.taken]))
        still_missing = [name for name in [*missing, *self.missing] if name not in now_taken]
        return DeliveryReport(now_taken, tuple(dict.fromkeys(still_missing)), self.outcome)


PartialDelivery = Callable[[DeliveryReport], Awaitable[None]]
"""Told when a channel took the result while others are still retried: the record can say
`delivered` now, not only when the budget ends."""


@dataclass
class _Rounds:
    """One delivery's state across its rounds."""

    pending: list[Channel]
    taken: list[str] = field(default_factory=list)
    refusals: dict[str, DeadLetter] = field(default_factory=dict)
    outcomes: list[DeliveryOutcome] = field(default_factory=list)

    def report(self) -> DeliveryReport:
        missing = [channel.name for channel in self.pending] + list(self.refusals)
        duplicate = DeliveryOutcome.DUPLICATE in self.outcomes
        outcome = DeliveryOutcome.DUPLICATE if duplicate else DeliveryOutcome.DELIVERED
        return DeliveryReport(tuple(self.taken), tuple(missing), outcome)


class Delivery:
    def __init__(self, channels: list[Channel], budget: DeliveryBudget) -> None:
        self._channels = channels
        self._budget = budget

    @property
    def channel_names(self) -> list[str]:
        return [channel.name for channel in self._channels]

    def deadline(self, generated_at: datetime | None) -> datetime:
        return self._budget.deadline(generated_at)

    async def deliver(
        self,
        result: FeedbackResult,
        deadline: datetime,
        skip: Collection[str] = (),
        on_partial: PartialDelivery | None = None,
    ) -> DeliveryReport:
        """Send `result` to every channel but those in `skip` (they took it before), round
        after round until each took it or `deadline` passes; which took it and which did not.

        Raises DeadLetter when no channel took it: the refusal when every one refused it for
        good, DeliveryBudgetSpent when the deadline passed first."""
        rounds = _Rounds(pending=[c for c in self._channels if c.name not in skip])
        for round_ in itertools.count(1):
            took_before = len(rounds.taken)
            failure = await self._round(result, rounds)
            if failure is None:
                break
            if on_partial is not None and len(rounds.taken) > took_before:
                await on_partial(rounds.report())
            delay = self._budget.delay(round_, deadline, failure.retry_after)
            if delay is None:
                self._give_up(result.request_id, rounds, failure)
                break
            if failure.operation is not None:
                metrics.WORKER_RETRIES.labels(failure.operation).inc()
            log.warning(
                "request %s: %s; delivery round %d in %.0fs",
                result.request_id,
                failure,
                round_ + 1,
                delay,
            )
            await self._budget.sleep(delay)
        if rounds.refusals and not rounds.taken:
            raise next(iter(rounds.refusals.values()))
        for name, refusal in rounds.refusals.items():
            log.error(
                "request %s: delivered to %s, but %s refused it: %s",
                result.request_id,
                " and ".join(rounds.taken),
                name,
                refusal,
            )
        return rounds.report()

    async def _round(self, result: FeedbackResult, rounds: _Rounds) -> DeliveryFailed | None:
        """Every pending channel at once: the callback does not wait for the result queue's send
        (make bench measured that wait in the delivery hop). Each runs to its end. Returns a
        transient failure while a channel is still owed the result."""
        answers = await asyncio.gather(
            *(channel.send(result) for channel in rounds.pending), return_exceptions=True
        )
        owed: list[Channel] = []
        failures: list[DeliveryFailed] = []
        for channel, answer in zip(rounds.pending, answers, strict=True):
            if isinstance(answer, DeliveryFailed):
                owed.append(channel)
                failures.append(answer)
            elif isinstance(answer, DeadLetter):
                rounds.refusals[channel.name] = answer
            elif isinstance(answer, BaseException):
                raise answer
            else:
                rounds.taken.append(channel.name)
                rounds.outcomes.append(answer)
        rounds.pending = owed
        return failures[0] if failures else None

    def _give_up(self, request_id: str, rounds: _Rounds, failure: DeliveryFailed) -> None:
        """The budget is spent: the request fails when no channel took the result; otherwise
        it is delivered, and the channels still owed it are given up here, loudly."""
        spent = f"undelivered {self._budget.seconds:.0f}s after it was generated: {failure}"
        if not rounds.taken:
            raise DeliveryBudgetSpent(spent)
        owed = " and ".join(channel.name for channel in rounds.pending)
        log.error(
            "request %s: delivered to %s, but %s never took it: %s",
            request_id,
            " and ".join(rounds.taken),
            owed,
            spent,
        )
