"""The worker keeps the request store's record: the feedback handler on an in-memory queue, the
store in moto's DynamoDB over HTTP, the fake LLM and the callback receiver. The whole lifecycle
through real processes, as GET shows it, is tests/e2e/test_e2e_request_lifecycle.py."""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from feedback_worker.memory import InMemorySource
from llm_common.contracts import FailureNotice
from llm_common.requests_store import RequestRecord, RequestState, RequestStore, StateConflict
from llm_common.telemetry.metrics import REGISTRY

from tests.support.clock import SimulatedClock
from tests.support.factories import RunFeedback
from tests.support.fakes import CallbackReceiver, SimulatedLlm
from tests.support.records import weekly_record
from tests.support.reliability import TcpProxy
from tests.support.waiting import eventually

DEADLINE = datetime.now(UTC) + timedelta(days=7)
HOUR = 3600.0


@dataclass
class Tracked:
    """The feedback handler on an in-memory queue with the request store in moto, and what it
    talks to."""

    source: InMemorySource
    store: RequestStore
    llm: SimulatedLlm
    receiver: CallbackReceiver
    run_feedback: RunFeedback
    table: str

    async def run(self, clock: SimulatedClock | None = None, **env: str) -> None:
        await self.run_feedback(self.source, clock=clock, REQUEST_TABLE_NAME=self.table, **env)

    def behind_a_receiver_down(self, member_id: int) -> tuple[str, SimulatedClock]:
        """A request on the queue (its record accepted) whose callback answers 503 until told
        otherwise; the simulated clock its delivery rounds will wait on."""
        self.store.accept(f"req-{member_id}", member_id, DEADLINE)
        self.receiver.script(status=503, times=10_000)
        return send(self.source, member_id), SimulatedClock()

    def record(self, request_id: str) -> RequestRecord:
        record = self.store.get(request_id)
        assert record is not None
        return record


@pytest.fixture
def tracked(
    run_feedback: RunFeedback,
    source: InMemorySource,
    request_table: str,
    llm: SimulatedLlm,
    receiver: CallbackReceiver,
) -> Tracked:
    store = RequestStore(request_table, "us-east-1")
    return Tracked(source, store, llm, receiver, run_feedback, request_table)


def send(source: InMemorySource, member_id: int) -> str:
    return source.send(weekly_record(member_id, f"req-{member_id}"), group_id=str(member_id))


async def test_a_permanent_refusal_ends_failed_with_a_notice_on_the_failure_path_only(
    tracked: Tracked,
) -> None:
    tracked.store.accept("req-41", 41, DEADLINE)
    tracked.receiver.script(status=404)
    send(tracked.source, 41)

    await tracked.run(CALLBACK_PATH="/feedback", CALLBACK_FAILURE_PATH="/feedback-failures")

    record = tracked.record("req-41")
    assert record.state is RequestState.FAILED
    assert record.failure_reason == "callback rejected the result: HTTP 404: "
    result, notice = tracked.receiver.deliveries()
    assert (result["path"], result["status"]) == ("/feedback", 404)
    assert notice["path"] == "/feedback-failures"
    assert notice["webhook_id"] == FailureNotice.model_validate(notice["body"]).webhook_id
    assert notice["webhook_id"] != "req-41"  # the result's id: the backend keeps one store
    assert notice["body"] == {
        "requestId": "req-41",
        "memberId": 41,
        "state": "failed",
        "reason": "callback rejected the result: HTTP 404: ",
        "timestamp": notice["body"]["timestamp"],
    }
    assert "content" not in notice["body"]


async def test_without_a_failure_path_no_notice_is_sent(
    run_feedback: RunFeedback, source: InMemorySource, receiver: CallbackReceiver
) -> None:
    receiver.script(status=400)
    send(source, 42)

    await run_feedback(source)

    assert [d["status"] for d in receiver.deliveries()] == [400]


async def test_a_receiver_down_for_an_hour_gets_the_result_after_with_one_llm_call(
    tracked: Tracked,
) -> None:
    message_id, clock = tracked.behind_a_receiver_down(43)
    clock.at(HOUR, tracked.receiver.reset)  # the backend's deploy is over: it answers again

    await tracked.run(clock, CALLBACK_MAX_ATTEMPTS="1")

    assert clock.elapsed > HOUR - 1
    assert tracked.source.deleted == [message_id]
    assert tracked.source.receives == 1  # held all along: no receive spent
    assert tracked.llm.stats()["requests"] == 1
    [delivered] = tracked.receiver.deliveries()
    record = tracked.record("req-43")
    assert record.state is RequestState.DELIVERED
    assert record.content == delivered["body"]["content"]
    assert max(clock.sleeps) <= 60  # DELIVERY_RETRY_MAX_DELAY_SECONDS: back soon after


async def test_a_receiver_down_past_the_delivery_budget_ends_failed_with_the_reason(
    tracked: Tracked,
) -> None:
    _, clock = tracked.behind_a_receiver_down(44)

    await tracked.run(clock, DELIVERY_RETRY_SECONDS="600", CALLBACK_MAX_ATTEMPTS="1")

    [dead] = tracked.source.dead_letters
    assert (dead.reason or "").startswith("undelivered 600s after it was generated: callback")
    record = tracked.record("req-44")
    assert (record.state, record.failure_reason) == (RequestState.FAILED, dead.reason)
    assert record.content is not None  # kept: `admin redeliver` can send it later
    assert 599 < clock.elapsed < 700  # the budget, to the microsecond
    assert tracked.llm.stats()["requests"] == 1


async def test_a_message_back_after_its_result_was_stored_sends_that_result_without_the_llm(
    tracked: Tracked,
) -> None:
    text = "지난번에 써 둔 피드백이에요. 이번 주도 수고 많았어요!"
    tracked.store.accept("req-45", 45, DEADLINE)
    tracked.store.store_result("req-45", text, receive=1)
    send(tracked.source, 45)
    # The worker that stored it died before delivering: its receive counted, the message is back.
    await tracked.source.receive(1, 0, 0)

    await tracked.run()

    assert tracked.llm.stats()["requests"] == 0
    [delivery] = tracked.receiver.deliveries()
    assert delivery["body"]["content"] == text
    record = tracked.record("req-45")
    assert (record.state, record.attempts) == (RequestState.DELIVERED, 2)


async def test_a_copy_of_a_delivered_request_is_deleted_without_work(tracked: Tracked) -> None:
    tracked.store.accept("req-46", 46, DEADLINE)
    tracked.store.store_result(
        "req-46", "이미 전달된 피드백이에요. 다음 주도 응원할게요!", receive=1
    )
    tracked.store.mark_delivered("req-46", ["callback"], "delivered", missing=[])
    message_id = send(tracked.source, 46)
    await tracked.source.receive(1, 0, 0)

    await tracked.run()

    assert tracked.source.deleted == [message_id]
    assert tracked.llm.stats()["requests"] == 0
    assert tracked.receiver.deliveries() == []


async def test_an_llm_failing_on_every_receive_ends_failed_with_why(tracked: Tracked) -> None:
    tracked.store.accept("req-47", 47, DEADLINE)
    tracked.llm.control(refuse=True, fail_status=503)
    send(tracked.source, 47)

    for _ in range(3):  # the in-memory queue allows 3 receives
        await tracked.run(LLM_MAX_RETRIES="0")
        tracked.source.advance(60)

    record = tracked.record("req-47")
    assert record.state is RequestState.FAILED
    assert record.failure_reason == "gave up after 3 receives: LLM call failed: HTTP 503"
    assert record.attempts == 3


async def test_a_store_outage_after_acceptance_loses_nothing(
    tracked: Tracked, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB cut while work is under way: a message whose LLM call ends during the cut is
    held, its text undelivered until the store holds it, then delivered and recorded; one that
    needs its record first waits in the queue until the store is back, then is delivered."""
    proxy = TcpProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    proxy.up()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
    for member in (48, 49):
        tracked.store.accept(f"req-{member}", member, DEADLINE)
    tracked.llm.control(latency_s=1.0)
    send(tracked.source, 49)
    waiting = send(tracked.source, 48)
    await tracked.source.receive(2, 0, 0)  # both received before by a worker that died
    retries = _store_retries()
    # One slot: req-48 is received once req-49's LLM call has ended, and reads its record then.
    run = asyncio.create_task(tracked.run(WORKER_CONCURRENCY="1", WORKER_PREFETCH="0"))
    await eventually(lambda: tracked.llm.stats()["requests"] >= 1, what="req-49 at the LLM")
    proxy.down()
    await eventually(lambda: _store_retries() > retries, what="req-49's result written again")
    # Handed back: hidden for its retry delay (2 s), not for a held message's 10 s.
    await eventually(
        lambda: (
            tracked.source.receive_counts()[waiting] == 2
            and tracked.source.hidden_until(waiting) < 10
        ),
        what="req-48 back in the queue",
    )

    assert tracked.receiver.deliveries() == []  # no text the store does not hold
    proxy.up()
    await run

    [delivered] = tracked.receiver.deliveries()
    record = tracked.record("req-49")
    assert (record.state, record.content) == (RequestState.DELIVERED, delivered["body"]["content"])
    assert tracked.source.counts() == (0, 1)  # req-48 back in the queue, not in the DLQ
    tracked.source.advance(60)
    await tracked.run()
    proxy.down()

    assert sorted(d["webhook_id"] for d in tracked.receiver.deliveries()) == ["req-48", "req-49"]
    assert tracked.record("req-48").state is RequestState.DELIVERED
    assert tracked.source.dead_letters == []
    assert tracked.llm.stats()["requests"] == 2


def _store_retries() -> float:
    return REGISTRY.get_sample_value("feedback_worker_retries_total", {"operation": "store"}) or 0.0


def _skipped_as_cancelled() -> float:
    labels = {"reason": "cancelled"}
    return REGISTRY.get_sample_value("feedback_worker_skipped_total", labels) or 0.0


@pytest.mark.parametrize("received_before", [False, True])
async def test_a_request_cancelled_before_a_worker_took_it_is_deleted_without_llm_or_delivery(
    tracked: Tracked, received_before: bool
) -> None:
    """On its first receive (found at the `generating` write) or on a later one (a worker died
    holding it; its record is read first)."""
    tracked.store.accept("req-50", 50, DEADLINE)
    tracked.store.cancel("req-50")
    message_id = send(tracked.source, 50)
    if received_before:
        await tracked.source.receive(1, 0, 0)
    skipped = _skipped_as_cancelled()

    await tracked.run(CALLBACK_FAILURE_PATH="/feedback-failures")

    assert tracked.source.deleted == [message_id]
    assert tracked.source.dead_letters == []
    assert tracked.llm.stats()["requests"] == 0
    assert tracked.receiver.deliveries() == []
    assert tracked.record("req-50").state is RequestState.CANCELLED
    assert _skipped_as_cancelled() == skipped + 1


async def test_a_cancel_while_the_worker_holds_the_message_wins_until_the_llm_is_asked(
    tracked: Tracked,
) -> None:
    """One LLM slot: req-52 is received and waits for it while req-51 is at the LLM, and the
    backend cancels req-52 then."""
    for member in (51, 52):
        tracked.store.accept(f"req-{member}", member, DEADLINE)
    tracked.llm.control(latency_s=1.0)
    at_the_llm = send(tracked.source, 51)
    waiting = send(tracked.source, 52)
    run = asyncio.create_task(tracked.run(WORKER_CONCURRENCY="1", WORKER_PREFETCH="1"))
    await eventually(
        lambda: (
            tracked.llm.stats()["requests"] == 1
            and tracked.source.receive_counts() == {at_the_llm: 1, waiting: 1}
        ),
        what="req-52 held while req-51 is at the LLM",
    )

    assert tracked.store.cancel("req-52").state is RequestState.CANCELLED
    await run

    assert tracked.llm.stats()["requests"] == 1
    assert [d["webhook_id"] for d in tracked.receiver.deliveries()] == ["req-51"]
    assert sorted(tracked.source.deleted) == sorted([at_the_llm, waiting])
    assert tracked.record("req-52").state is RequestState.CANCELLED
    assert tracked.record("req-51").state is RequestState.DELIVERED


async def test_a_cancel_once_the_llm_is_asked_is_refused_and_the_feedback_delivered(
    tracked: Tracked,
) -> None:
    tracked.store.accept("req-53", 53, DEADLINE)
    tracked.llm.control(latency_s=1.0)
    send(tracked.source, 53)
    run = asyncio.create_task(tracked.run())
    await eventually(lambda: tracked.llm.stats()["requests"] == 1, what="req-53 at the LLM")

    with pytest.raises(StateConflict) as refused:
        tracked.store.cancel("req-53")
    await run

    assert refused.value.current is not None
    assert refused.value.current.state is RequestState.GENERATING
    [delivery] = tracked.receiver.deliveries()
    assert delivery["webhook_id"] == "req-53"
    assert tracked.record("req-53").state is RequestState.DELIVERED


async def test_a_cancelled_request_past_its_deadline_gets_no_failure_notice(
    tracked: Tracked,
) -> None:
    """Its deadline is checked before the LLM slot, so it goes to the DLQ as expired; but the
    backend, which cancelled it, hears nothing more of it."""
    tracked.store.accept("req-54", 54, DEADLINE)
    tracked.store.cancel("req-54")
    stale = {**weekly_record(54, "req-54"), "deadline": "2020-01-01T00:00:00"}
    tracked.source.send(stale, group_id="54")

    await tracked.run(CALLBACK_FAILURE_PATH="/feedback-failures")

    assert tracked.receiver.deliveries() == []
    assert tracked.llm.stats()["requests"] == 0
    assert tracked.record("req-54").state is RequestState.CANCELLED


async def test_the_record_keeps_what_every_draft_of_its_result_cost(tracked: Tracked) -> None:
    # The first draft carries a link (refused, written again), the second passes: the request
    # cost both calls, and its record says so for the backend's bill.
    fit = "이번 주 달리기를 네 번이나 해냈어요! 물 마시기는 아쉬웠지만 다음 주엔 꼭 해봐요."
    drafts = [f"{fit} https://example.com", fit]
    answers = [{"content": draft, "finish_reason": "stop"} for draft in drafts]
    tracked.llm.control(answers=answers, latency_s=0.2)
    tracked.store.accept("req-47", 47, DEADLINE)
    send(tracked.source, 47)

    await tracked.run()

    record = tracked.record("req-47")
    assert record.state is RequestState.DELIVERED
    assert record.usage is not None
    prompt = tracked.llm.requests()[-1]["messages"]
    one_prompt = sum(len(message["content"]) for message in prompt)  # the fake: a token a char
    assert record.usage.prompt_tokens == 2 * one_prompt
    assert record.usage.completion_tokens > 0  # as the fake counted its own drafts
    assert record.usage.llm_seconds >= 2 * 0.2
