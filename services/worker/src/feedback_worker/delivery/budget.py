"""Deliver until delivered: every channel gets the result, retried within a budget of its own.

A callback receiver that is down (a backend deploy, an outage of an hour) must not send the
request back through the queue: each return would spend one of its receives, and the redrive
policy allows five. So the worker holds the message (the heartbeat keeps it hidden) and retries
the channels that have not taken the result yet, with a growing wait between rounds, until
DELIVERY_RETRY_SECONDS have passed since the result was generated. The LLM is never asked again:
the same text is sent each round. Only a permanent refusal (400/404) or the end of the budget
ends the request `failed`.

A message held this way keeps its delivery slot, so a pod whose deliveries are stuck stops
taking new messages (slots.py): the backlog waits in the queue, not in memory.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from llm_common.contracts import FeedbackResult
from llm_common.telemetry import metrics
from llm_common.telemetry.names import DeliveryOutcome

from feedback_worker.backoff import backoff_delay
from feedback_worker.errors import DeadLetter, DeliveryBudgetSpent, DeliveryFailed

if TYPE_CHECKING:
    from feedback_worker.delivery import Channel

log = logging.getLogger(__name__)


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


class Delivery:
    def __init__(self, channels: list[Channel], budget: DeliveryBudget) -> None:
        self._channels = channels
        self._budget = budget

    @property
    def channel_names(self) -> list[str]:
        return [channel.name for channel in self._channels]

    async def deliver(self, result: FeedbackResult, generated_at: datetime | None) -> str:
        """Send `result` to every channel; its outcome: `delivered`, or `duplicate` when a
        receiver already had it (409). Raises DeadLetter for a permanent refusal or when the
        budget, counted from `generated_at` (now when None), is spent."""
        deadline = (generated_at or self._budget.now()) + timedelta(seconds=self._budget.seconds)
        pending = list(self._channels)
        outcomes: list[DeliveryOutcome] = []
        for round_ in itertools.count(1):
            failure, pending = await self._round(result, pending, outcomes)
            if failure is None:
                break
            await self._wait(failure, round_, deadline, result.request_id)
        duplicate = DeliveryOutcome.DUPLICATE in outcomes
        return (DeliveryOutcome.DUPLICATE if duplicate else DeliveryOutcome.DELIVERED).value

    async def _round(
        self, result: FeedbackResult, pending: list[Channel], outcomes: list[DeliveryOutcome]
    ) -> tuple[DeliveryFailed | None, list[Channel]]:
        """Every pending channel at once: the callback does not wait for the result queue's send
        (make bench measured that wait in the delivery hop). Each runs to its end; a permanent
        failure outranks a transient one. Returns a transient failure and who is still owed."""
        answers = await asyncio.gather(
            *(channel.send(result) for channel in pending), return_exceptions=True
        )
        owed: list[Channel] = []
        failures: list[Exception] = []
        for channel, answer in zip(pending, answers, strict=True):
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer
            if isinstance(answer, Exception):
                owed.append(channel)
                failures.append(answer)
            else:
                outcomes.append(answer)
        for failure in sorted(failures, key=lambda f: not isinstance(f, DeadLetter)):
            if not isinstance(failure, DeliveryFailed):
                raise failure
        transient = [f for f in failures if isinstance(f, DeliveryFailed)]
        return (transient[0] if transient else None), owed

    async def _wait(
        self, failure: DeliveryFailed, round_: int, deadline: datetime, request_id: str
    ) -> None:
        left = (deadline - self._budget.now()).total_seconds()
        if left <= 0:
            raise DeliveryBudgetSpent(
                f"undelivered {self._budget.seconds:.0f}s after it was generated: {failure}"
            )
        delay = backoff_delay(round_, self._budget.first_delay, self._budget.max_delay)
        delay = min(max(delay, failure.retry_after or 0), left)
        if failure.operation is not None:
            metrics.WORKER_RETRIES.labels(failure.operation).inc()
        log.warning(
            "request %s: %s; delivery round %d in %.0fs (%.0fs of the budget left)",
            request_id,
            failure,
            round_ + 1,
            delay,
            left,
        )
        await self._budget.sleep(delay)
