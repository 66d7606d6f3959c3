"""The runner on its own: an in-memory source and scripted handlers, no network, no sleeps
beyond the heartbeat's and the receive backoff's own."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from feedback_worker.errors import DeadLetter, RetryLater
from feedback_worker.memory import InMemorySource
from feedback_worker.runner import Runner, RunnerConfig
from feedback_worker.slots import Place
from feedback_worker.source import QueueMessage

from tests.support.waiting import eventually

Work = Callable[[QueueMessage], Awaitable[None]]


class Scripted:
    """A handler that runs `work` between start_work and finish_work, and counts."""

    def __init__(self, work: Work | None = None) -> None:
        self.calls: list[str] = []
        self.worked: list[str] = []
        """Messages that got a work slot."""
        self.at_work = 0
        self.most_at_work = 0
        self._work = work

    async def handle(self, message: QueueMessage, place: Place) -> None:
        self.calls.append(message.message_id)
        await place.start_work()
        self.worked.append(message.message_id)
        self.at_work += 1
        self.most_at_work = max(self.most_at_work, self.at_work)
        try:
            if self._work is not None:
                await self._work(message)
            else:
                await asyncio.sleep(0)
        finally:
            self.at_work -= 1
        await place.finish_work()


def config(**changes: float) -> RunnerConfig:
    values: dict[str, float] = {
        "concurrency": 2,
        "prefetch": 1,
        "wait_seconds": 1,
        "visibility_timeout": 30,
        "retry_delay_seconds": 10,
        "retry_max_delay_seconds": 10,
        "drain_grace_seconds": 5,
    } | changes
    return RunnerConfig(**values)  # type: ignore[arg-type]


async def stop_while_at_work(source: InMemorySource) -> None:
    """Receive one message into work that never ends, then stop: the drain grace (0.1 s) runs
    out with the message still at work."""
    handler = Scripted(lambda _: asyncio.Event().wait())  # type: ignore[arg-type, return-value]
    runner = Runner(source, handler, config(drain_grace_seconds=0.1))
    running = asyncio.create_task(runner.run())
    await eventually(lambda: handler.at_work == 1, what="at work")
    runner.stop()
    await running


def raising(error: Exception) -> Work:
    async def work(_: QueueMessage) -> None:
        raise error

    return work


async def test_a_handled_message_is_deleted(source: InMemorySource) -> None:
    ids = [source.send({"n": n}, group_id=str(n)) for n in range(5)]
    handler = Scripted()

    await Runner(source, handler, config()).run(burst=True)

    assert sorted(source.deleted) == sorted(ids)
    assert sorted(handler.calls) == sorted(ids)
    assert source.counts() == (0, 0)


async def test_dead_letter_moves_the_message_at_once_with_its_reason(
    source: InMemorySource,
) -> None:
    message_id = source.send("poison")

    await Runner(source, Scripted(raising(DeadLetter("not a job"))), config()).run(burst=True)

    [dead] = source.dead_letters
    assert (dead.message_id, dead.reason) == (message_id, "not a job")
    assert source.receive_counts() == {}


async def test_retry_later_hides_the_message_for_its_delay_and_the_last_receive_dead_letters(
    source: InMemorySource,
) -> None:
    message_id = source.send("flaky")
    runner = Runner(source, Scripted(raising(RetryLater("LLM down"))), config())

    await runner.run(burst=True)
    assert source.counts() == (0, 1)  # hidden for the retry delay (10 s, less jitter)
    source.advance(7.4)
    assert source.counts() == (0, 1)
    source.advance(2.6)
    await runner.run(burst=True)
    source.advance(10)
    await runner.run(burst=True)

    [dead] = source.dead_letters
    assert dead.message_id == message_id
    assert dead.reason == "gave up after 3 receives: LLM down"


async def test_retry_after_asked_for_outlasts_the_backoff(source: InMemorySource) -> None:
    message_id = source.send("throttled")

    failure = RetryLater("429", retry_after=120)
    await Runner(source, Scripted(raising(failure)), config()).run(burst=True)

    assert source.hidden_until(message_id) == 120


async def test_an_unexpected_error_is_retried_not_lost(source: InMemorySource) -> None:
    source.send("boom")

    await Runner(source, Scripted(raising(KeyError("bug"))), config()).run(burst=True)

    assert source.counts() == (0, 1)
    assert source.dead_letters == []


async def test_work_is_bounded_by_the_concurrency_and_held_messages_by_the_prefetch(
    source: InMemorySource,
) -> None:
    for n in range(20):
        source.send({"n": n}, group_id=str(n))
    most_held = 0

    async def work(_: QueueMessage) -> None:
        nonlocal most_held
        most_held = max(most_held, source.counts()[1])
        await asyncio.sleep(0.01)

    handler = Scripted(work)
    await Runner(source, handler, config(concurrency=3, prefetch=2)).run(burst=True)

    assert handler.most_at_work == 3
    assert most_held <= 3 + 2 + 3  # at work, received ahead, finishing
    assert len(source.deleted) == 20


async def test_receives_wait_for_a_batch_of_free_slots_instead_of_one_each(
    source: InMemorySource,
) -> None:
    for n in range(200):
        source.send({"n": n}, group_id=str(n))

    async def work(message: QueueMessage) -> None:
        # Answers end one by one, as a loaded LLM's do, each freeing a single slot.
        await asyncio.sleep(0.001 * (int(message.message_id.removeprefix("m-")) % 7))

    runner_config = config(concurrency=32, prefetch=8)
    await Runner(source, Scripted(work), runner_config).run(burst=True)

    assert len(source.deleted) == 200
    # Each receive but the first few waits for the prefetch's worth (8) of free slots: one
    # receive per freed slot would take over a hundred calls of SQS's API for these messages.
    assert source.receives <= 200 // 8 + runner_config.receive_loops


async def test_a_copy_received_while_held_is_not_worked_twice_and_the_newest_handle_settles(
    source: InMemorySource,
) -> None:
    message_id = source.send("slow")
    release = asyncio.Event()

    async def work(_: QueueMessage) -> None:
        await release.wait()

    handler = Scripted(work)
    runner = Runner(source, handler, config(visibility_timeout=30, concurrency=1, prefetch=1))
    running = asyncio.create_task(runner.run())
    await eventually(lambda: handler.at_work == 1, what="the first copy at work")

    source.advance(30)  # its visibility ran out (a renewal failed, say): SQS hands out a copy
    await eventually(lambda: source.receive_counts()[message_id] == 2, what="the second copy")
    release.set()
    await eventually(lambda: source.deleted == [message_id], what="the delete")
    runner.stop()
    await running

    assert handler.calls == [message_id]
    assert source.counts() == (0, 0)  # an old receipt handle would have deleted nothing


async def test_the_heartbeat_keeps_a_slow_message_hidden(source: InMemorySource) -> None:
    message_id = source.send("slow")
    release = asyncio.Event()

    async def work(_: QueueMessage) -> None:
        await release.wait()

    handler = Scripted(work)
    runner = Runner(source, handler, config(visibility_timeout=3))
    running = asyncio.create_task(runner.run())
    await eventually(lambda: handler.at_work == 1, what="at work")
    source.advance(2)

    # Renewed every third of the timeout: hidden until 2 + 3, not 3.
    await eventually(lambda: source.hidden_until(message_id) == 5, what="a renewal")
    release.set()
    await eventually(lambda: source.deleted == [message_id], what="the delete")
    runner.stop()
    await running


async def test_on_stop_messages_waiting_for_work_go_back_at_once_and_the_rest_finish(
    source: InMemorySource,
) -> None:
    ids = [source.send({"n": n}, group_id=str(n)) for n in range(3)]
    release = asyncio.Event()

    async def work(_: QueueMessage) -> None:
        await release.wait()

    handler = Scripted(work)
    runner = Runner(source, handler, config(concurrency=1, prefetch=2))
    running = asyncio.create_task(runner.run())
    await eventually(lambda: handler.at_work == 1 and source.counts() == (0, 3), what="held")

    runner.stop()
    await eventually(lambda: source.counts() == (2, 1), what="the waiting two released")
    release.set()
    await running

    assert source.deleted == handler.worked
    assert len(handler.worked) == 1
    assert {*source.deleted, *source.receive_counts()} == set(ids)


async def test_work_that_outlasts_the_drain_grace_is_made_visible_again(
    source: InMemorySource,
) -> None:
    message_id = source.send("endless")

    await stop_while_at_work(source)

    assert source.counts() == (1, 0)
    assert source.receive_counts() == {message_id: 1}


@pytest.mark.parametrize("operation", ["receive", "delete"])
async def test_a_queue_failure_loses_nothing(source: InMemorySource, operation: str) -> None:
    message_id = source.send("job")
    source.fail(operation)
    runner = Runner(source, Scripted(), config())

    await runner.run(burst=True)  # a failed receive is tried again after a backoff
    if operation == "delete":
        # Not deleted: it comes back when its visibility ends and is worked again.
        assert source.counts() == (0, 1)
        source.advance(30)
        await runner.run(burst=True)

    assert source.deleted == [message_id]


async def test_work_stopped_on_its_last_receive_is_sent_again_with_its_receives_counted(
    source: InMemorySource,
) -> None:
    source.send("job", group_id="member-1", deduplication_id="request-1")
    failing = Scripted(raising(RetryLater("LLM down")))
    for _ in range(2):
        await Runner(source, failing, config()).run(burst=True)
        source.advance(10)
    # Its third and last allowed receive is at work when the worker is stopped.
    await stop_while_at_work(source)

    # Made visible, its next receive would have let the queue's redrive take it, reasonless.
    assert source.dead_letters == []
    [copy_id] = source.receive_counts()
    seen: list[QueueMessage] = []

    async def fail_again(message: QueueMessage) -> None:
        seen.append(message)
        raise RetryLater("LLM down")

    await Runner(source, Scripted(fail_again), config()).run(burst=True)
    # The copy is the same request, with the one receive the stop took back, and no more.
    assert [(m.message_id, m.deduplication_id, m.receives) for m in seen] == [
        (copy_id, "request-1", 3)
    ]
    [dead] = source.dead_letters
    assert dead.reason == "gave up after 3 receives: LLM down"
