"""What happens to a message when the LLM fails, or when the message itself is bad: the feedback
handler behind the runner, on an in-memory queue, against the fake LLM over HTTP."""

import json

from feedback_worker.memory import InMemorySource

from tests.support.factories import RunFeedback
from tests.support.fakes import CallbackReceiver, SimulatedLlm
from tests.support.records import weekly_record


def send(source: InMemorySource, member_id: int) -> str:
    return source.send(weekly_record(member_id, f"req-{member_id}"), group_id=str(member_id))


async def test_transient_llm_errors_are_retried_by_the_client_then_delivered(
    run_feedback: RunFeedback, source: InMemorySource, llm: SimulatedLlm, receiver: CallbackReceiver
) -> None:
    llm.control(fail_next=2, fail_status=503)
    send(source, 11)

    await run_feedback(source, LLM_MAX_RETRIES="2")

    assert receiver.statuses() == [200]
    counted = llm.stats()
    assert (counted["requests"], counted["completions"], counted["failures"]) == (3, 1, 2)
    assert counted["max_in_flight"] == 1
    assert source.counts() == (0, 0)


async def test_a_429_with_retry_after_from_the_llm_is_retried(
    run_feedback: RunFeedback, source: InMemorySource, llm: SimulatedLlm, receiver: CallbackReceiver
) -> None:
    llm.control(fail_next=1, fail_status=429, retry_after="1")
    send(source, 12)

    await run_feedback(source, LLM_MAX_RETRIES="1")

    assert receiver.statuses() == [200]
    assert llm.stats()["requests"] == 2


async def test_with_the_llm_failing_the_message_comes_back_until_the_dlq_takes_it_with_why(
    run_feedback: RunFeedback, source: InMemorySource, llm: SimulatedLlm, receiver: CallbackReceiver
) -> None:
    llm.control(refuse=True, fail_status=503)
    message_id = send(source, 14)

    # The source allows 3 receives: after the third try the worker moves it to the DLQ itself,
    # with the reason (SQS's own redrive would move it without one).
    for _ in range(3):
        await run_feedback(source, LLM_MAX_RETRIES="0")
        source.advance(60)

    assert llm.stats()["requests"] == 3
    [dead] = source.dead_letters
    assert dead.message_id == message_id
    assert json.loads(dead.body)["requestId"] == "req-14"
    assert (dead.reason or "").startswith("gave up after 3 receives: LLM call failed: HTTP 503")
    assert source.counts() == (0, 0)
    assert receiver.deliveries() == []


async def test_a_failing_llm_returns_the_message_with_a_delay_not_at_once(
    run_feedback: RunFeedback, source: InMemorySource, llm: SimulatedLlm
) -> None:
    llm.control(refuse=True, fail_status=503)
    message_id = send(source, 15)

    await run_feedback(
        source, LLM_MAX_RETRIES="0", RETRY_DELAY_SECONDS="60", RETRY_MAX_DELAY_SECONDS="60"
    )

    # Back in 60 s less up to a quarter: far longer than the 10 s visibility timeout.
    assert 45 <= source.hidden_until(message_id) <= 60
    assert llm.stats()["requests"] == 1


async def test_a_poison_message_goes_to_the_dlq_at_once_with_its_reason(
    run_feedback: RunFeedback, source: InMemorySource, llm: SimulatedLlm
) -> None:
    not_json = source.send("{not json", group_id="1")
    invalid = source.send(weekly_record(2) | {"memberId": None}, group_id="2")

    await run_feedback(source)

    dead = {letter.message_id: letter for letter in source.dead_letters}
    assert dead[not_json].body == "{not json"
    assert "Invalid JSON" in (dead[not_json].reason or "")
    assert "memberId" in (dead[invalid].reason or "")
    # Received once, never retried: the queue is empty and the LLM was never asked.
    assert source.counts() == (0, 0)
    assert llm.stats()["requests"] == 0
