"""How the worker reads the callback's answers (docs/backend-contract.md): the feedback handler
on an in-memory queue, against the callback receiver over HTTP."""

import json

import pytest
from feedback_worker.memory import InMemorySource

from tests.support.factories import RunFeedback
from tests.support.fakes import CallbackReceiver, SimulatedLlm
from tests.support.records import weekly_record
from tests.support.waiting import eventually


def send(source: InMemorySource, member_id: int) -> str:
    return source.send(weekly_record(member_id, f"req-{member_id}"), group_id=str(member_id))


async def test_409_already_stored_counts_as_delivered(
    run_feedback: RunFeedback, source: InMemorySource, receiver: CallbackReceiver
) -> None:
    receiver.script(status=409)
    message_id = send(source, 21)

    await run_feedback(source)

    assert receiver.statuses() == [409]
    assert source.deleted == [message_id]
    assert source.dead_letters == []


@pytest.mark.parametrize("status", [400, 404])
async def test_400_and_404_are_permanent_not_retried_and_recorded_in_the_dlq(
    run_feedback: RunFeedback,
    source: InMemorySource,
    receiver: CallbackReceiver,
    llm: SimulatedLlm,
    status: int,
) -> None:
    receiver.script(status=status, times=5)
    send(source, 22)

    await run_feedback(source)

    assert receiver.statuses() == [status]
    [dead] = source.dead_letters
    assert json.loads(dead.body)["requestId"] == "req-22"
    assert f"HTTP {status}" in (dead.reason or "")
    assert source.counts() == (0, 0)
    assert llm.stats()["requests"] == 1


async def test_429_with_retry_after_is_retried_until_delivered(
    run_feedback: RunFeedback, source: InMemorySource, receiver: CallbackReceiver, llm: SimulatedLlm
) -> None:
    receiver.script(status=429, times=2, retry_after="1")
    send(source, 23)

    await run_feedback(source)

    assert receiver.statuses() == [429, 429, 200]
    assert source.counts() == (0, 0)
    assert llm.stats()["requests"] == 1  # retried within the message, not re-generated


async def test_a_callback_that_times_out_is_retried_and_the_duplicate_is_harmless(
    run_feedback: RunFeedback, source: InMemorySource, receiver: CallbackReceiver
) -> None:
    # The first call answers after the worker gave up on it; the receiver, keyed by webhook-id,
    # stores one of the two calls and answers the other 409.
    receiver.script(delay_s=2.0)
    send(source, 24)

    await run_feedback(source, CALLBACK_TIMEOUT_SECONDS="0.5")

    await eventually(lambda: sorted(receiver.statuses()) == [200, 409])
    assert source.counts() == (0, 0)
    assert source.dead_letters == []


async def test_callback_attempts_spent_on_5xx_are_retried_in_the_delivery_budget_not_the_queue(
    run_feedback: RunFeedback, source: InMemorySource, receiver: CallbackReceiver, llm: SimulatedLlm
) -> None:
    receiver.script(status=503, times=2)
    message_id = send(source, 25)

    await run_feedback(source, CALLBACK_MAX_ATTEMPTS="2")

    assert receiver.statuses() == [503, 503, 200]
    assert source.deleted == [message_id]
    # Held and retried, not handed back: one receive, one LLM call, the same text each time.
    assert source.receives == 1
    assert llm.stats()["requests"] == 1
    assert len({json.dumps(d["body"]["content"]) for d in receiver.deliveries()}) == 1
