"""Channels are not all or nothing: the request is delivered once any channel took the result,
the others retried within the budget and then listed as missing; it fails only when none took
it. Delivery's rounds with scripted channels, on simulated time."""

from datetime import datetime

import pytest
from feedback_worker.delivery import Delivery, DeliveryBudget, DeliveryReport
from feedback_worker.errors import CallbackRejected, DeliveryBudgetSpent, ResultQueueFailed
from llm_common.contracts import FeedbackResult
from llm_common.telemetry.names import DeliveryOutcome

from tests.support.clock import SimulatedClock
from tests.support.fakes import ScriptedChannel

BUDGET_S = 600.0
TOOK = DeliveryOutcome.DELIVERED


def _result() -> FeedbackResult:
    return FeedbackResult(
        member_id=7, content="이번 주도 잘했어요!", timestamp=datetime.now(), request_id="req-7"
    )


def _queue_down() -> ResultQueueFailed:
    return ResultQueueFailed("result queue: AWS.SimpleQueueService.NonExistentQueue")


def _rejected() -> CallbackRejected:
    return CallbackRejected("callback rejected the result: HTTP 404: ")


async def _deliver(
    *channels: ScriptedChannel, skip: tuple[str, ...] = ()
) -> tuple[DeliveryReport, list[DeliveryReport], SimulatedClock]:
    """The report, what the partial-delivery hook was told, and the clock after."""
    clock = SimulatedClock()
    budget = DeliveryBudget(BUDGET_S, 1, 60, now=clock.now, sleep=clock.sleep)
    delivery = Delivery(list(channels), budget)
    told: list[DeliveryReport] = []

    async def partial(report: DeliveryReport) -> None:
        told.append(report)

    report = await delivery.deliver(_result(), budget.deadline(None), skip, partial)
    return report, told, clock


async def test_a_result_the_callback_took_is_delivered_while_the_queue_is_retried() -> None:
    queue = ScriptedChannel("result queue", [_queue_down()])
    callback = ScriptedChannel("callback", [TOOK])

    report, told, clock = await _deliver(queue, callback)

    assert report == DeliveryReport(("callback",), ("result queue",), TOOK)
    assert told == [report]  # recorded `delivered` after the first round, not at the end
    assert len(callback.sent) == 1
    assert len(queue.sent) > 2  # retried round after round ...
    assert BUDGET_S - 1 < clock.elapsed < BUDGET_S + 1  # ... until the budget's end


async def test_a_channel_back_within_the_budget_completes_the_delivery() -> None:
    queue = ScriptedChannel("result queue", [_queue_down(), _queue_down(), TOOK])
    callback = ScriptedChannel("callback", [DeliveryOutcome.DUPLICATE])

    report, told, _ = await _deliver(queue, callback)

    assert report == DeliveryReport(("callback", "result queue"), (), DeliveryOutcome.DUPLICATE)
    assert [r.missing for r in told] == [("result queue",)]


async def test_a_refusal_while_another_channel_took_it_is_a_missing_channel_not_a_failure() -> None:
    queue = ScriptedChannel("result queue", [TOOK])
    callback = ScriptedChannel("callback", [_rejected()])

    report, _, clock = await _deliver(queue, callback)

    assert report == DeliveryReport(("result queue",), ("callback",), TOOK)
    assert len(callback.sent) == 1  # refused for good: not retried
    assert clock.elapsed == 0


@pytest.mark.parametrize(
    ("queue_answer", "callback_answer", "error"),
    [
        (_rejected(), _rejected(), CallbackRejected),  # every channel refused it for good
        (_queue_down(), _rejected(), DeliveryBudgetSpent),
        (_queue_down(), _queue_down(), DeliveryBudgetSpent),
    ],
)
async def test_a_request_fails_only_when_no_channel_took_it(
    queue_answer: Exception, callback_answer: Exception, error: type[Exception]
) -> None:
    queue = ScriptedChannel("result queue", [queue_answer])
    callback = ScriptedChannel("callback", [callback_answer])

    with pytest.raises(error):
        await _deliver(queue, callback)


async def test_channels_that_took_it_before_are_not_sent_it_again() -> None:
    queue = ScriptedChannel("result queue", [TOOK])
    callback = ScriptedChannel("callback", [TOOK])

    report, _, _ = await _deliver(queue, callback, skip=("callback",))

    assert callback.sent == []
    assert report.after(["callback"]) == DeliveryReport(("callback", "result queue"), (), TOOK)


def test_a_delivery_on_top_of_an_earlier_one_keeps_every_channel_that_ever_took_it() -> None:
    earlier = (["callback"], ["result queue"])

    queue_now = DeliveryReport(("result queue",), (), TOOK).after(*earlier)
    callback_again = DeliveryReport(("callback",), (), TOOK).after(*earlier)

    assert queue_now == DeliveryReport(("callback", "result queue"), (), TOOK)
    assert callback_again == DeliveryReport(("callback",), ("result queue",), TOOK)
