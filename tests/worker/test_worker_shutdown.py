"""SIGTERM: stop receiving, finish what is in flight within the grace, release the rest, exit 0."""

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from devstack.processes import ManagedProcess, python_module
from devstack.queues import FeedbackQueues
from mypy_boto3_sqs import SQSClient
from mypy_boto3_sqs.type_defs import MessageTypeDef

from tests.support.factories import StartWorker
from tests.support.fakes import CallbackReceiver, SimulatedLlm
from tests.support.queues import enqueue, queue_counts, receive_all
from tests.support.waiting import eventually

StartProcess = Callable[..., ManagedProcess]


@pytest.fixture
def start_worker_process(worker_env: dict[str, str], log_dir: Path) -> Iterator[StartProcess]:
    """`python -m feedback_worker` as production runs it; AWS_* come from the aws_env fixture."""
    processes: list[ManagedProcess] = []

    def start(**overrides: str) -> ManagedProcess:
        process = ManagedProcess(
            name="worker",
            argv=python_module("feedback_worker"),
            log_path=log_dir / f"worker-{len(processes)}.log",
            env={**worker_env, **overrides},
        ).start()
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop(grace=5)


async def wait_for_exit(process: ManagedProcess, within_s: float = 30) -> int | None:
    return await asyncio.to_thread(process.wait, within_s)


async def test_sigterm_lets_in_flight_work_finish_then_exits_0(
    start_worker_process: StartProcess,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    llm: SimulatedLlm,
    receiver: CallbackReceiver,
) -> None:
    llm.control(latency_s=1.0)
    enqueue(sqs, feedback_queues.requests, member_id=41, request_id="req-41")
    worker = start_worker_process()
    await eventually(lambda: llm.stats()["in_flight"] == 1)

    worker.send_signal(signal.SIGTERM)

    assert await wait_for_exit(worker) == 0, worker.tail()
    assert receiver.statuses() == [200]
    assert queue_counts(sqs, feedback_queues.requests) == (0, 0)
    assert "worker stopped" in worker.log_path.read_text()


async def test_work_that_outlasts_the_grace_is_visible_again_at_once(
    start_worker_process: StartProcess,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    llm: SimulatedLlm,
    receiver: CallbackReceiver,
) -> None:
    llm.control(latency_s=10.0)
    enqueue(sqs, feedback_queues.requests, member_id=42, request_id="req-42")
    worker = start_worker_process(DRAIN_GRACE_SECONDS="0.5", VISIBILITY_TIMEOUT_SECONDS="60")
    await eventually(lambda: llm.stats()["in_flight"] == 1)

    worker.send_signal(signal.SIGTERM)

    assert await wait_for_exit(worker) == 0, worker.tail()
    # Without the release it would stay hidden for the 60 s visibility timeout.
    [message] = receive_all(sqs, feedback_queues.requests)
    assert '"req-42"' in message["Body"]
    assert receiver.deliveries() == []


async def test_sigterm_does_not_wait_out_a_long_poll(
    start_worker_process: StartProcess, log_dir: Path
) -> None:
    worker = start_worker_process(SQS_WAIT_SECONDS="20")
    await eventually(lambda: "worker up" in worker.log_path.read_text())
    await asyncio.sleep(1)  # the first 20 s poll is open

    worker.send_signal(signal.SIGTERM)

    assert await wait_for_exit(worker, within_s=10) == 0, worker.tail()


async def test_messages_a_pending_poll_returns_after_shutdown_began_are_released(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    llm: SimulatedLlm,
) -> None:
    llm.control(latency_s=3.0)
    enqueue(sqs, feedback_queues.requests, member_id=43, request_id="req-43")
    # Without the LLM gate, whose first call is a trial that leaves no slot for a second poll.
    worker = await start_worker(
        SQS_WAIT_SECONDS="20", VISIBILITY_TIMEOUT_SECONDS="60", LLM_GATE_ENABLED="false"
    )
    await eventually(lambda: llm.stats()["in_flight"] == 1)
    await asyncio.sleep(0.5)  # with a free slot left, the next 20 s poll is open

    worker.stop()  # draining: req-43 is still with the LLM
    enqueue(sqs, feedback_queues.requests, member_id=44, request_id="req-44")
    await asyncio.sleep(0.5)  # the open poll takes req-44 at once

    # ... and must not leave it hidden for the 60 s visibility timeout. (Short polls: a moto
    # long poll would not see a FIFO group released during it.)
    received: list[MessageTypeDef] = []

    def released() -> bool:
        received.extend(receive_all(sqs, feedback_queues.requests, wait_s=0))
        return bool(received)

    await eventually(released, within_s=10)
    [message] = received
    assert '"req-44"' in message["Body"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "2"
    assert llm.stats()["requests"] == 1
