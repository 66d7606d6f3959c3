"""Fixtures for the worker's tests: the fake servers over HTTP, the in-memory runs of the
feedback handler, and a factory for whole workers on moto."""

import asyncio
from collections.abc import AsyncIterator, Iterator

import boto3
import pytest
from devstack.fakes import callback_receiver
from devstack.queues import FeedbackQueues
from devstack.serving import BackgroundServer
from feedback_worker.memory import InMemorySource
from feedback_worker.runner import Runner
from feedback_worker.settings import WorkerSettings
from feedback_worker.worker import Worker
from mypy_boto3_sqs import SQSClient

from tests.support.clock import SimulatedClock
from tests.support.factories import RunFeedback, StartWorker
from tests.support.fakes import (
    TEST_MODEL,
    TEST_SECRET,
    CallbackReceiver,
    SimulatedLlm,
    simulated_llm,
)


@pytest.fixture(scope="session")
def _llm_server() -> Iterator[SimulatedLlm]:
    """The simulated LLM in exact-latency mode: no latency until a test sets one."""
    with simulated_llm(model=TEST_MODEL, latency_s=0.0) as server:
        yield server


@pytest.fixture(scope="session")
def _callback_server() -> Iterator[BackgroundServer]:
    with BackgroundServer(callback_receiver.create_app(TEST_SECRET)) as server:
        yield server


@pytest.fixture
def llm(_llm_server: SimulatedLlm) -> SimulatedLlm:
    _llm_server.reset()
    return _llm_server


@pytest.fixture
def receiver(_callback_server: BackgroundServer) -> CallbackReceiver:
    client = CallbackReceiver(_callback_server.url)
    client.reset()
    return client


@pytest.fixture
def base_env(llm: SimulatedLlm, receiver: CallbackReceiver) -> dict[str, str]:
    """Test settings as environment variables: short waits, short delays, small retries."""
    return {
        "CALLBACK_URL": receiver.url,
        "CALLBACK_SECRET": TEST_SECRET,
        "LLM_BASE_URL": llm.base_url,
        "LLM_MODEL": TEST_MODEL,
        "LLM_MAX_RETRIES": "2",
        "LLM_TIMEOUT_SECONDS": "10",
        "SQS_WAIT_SECONDS": "1",
        "VISIBILITY_TIMEOUT_SECONDS": "10",
        "WORKER_CONCURRENCY": "4",
        "RETRY_DELAY_SECONDS": "1",
        "RETRY_MAX_DELAY_SECONDS": "2",
        "CALLBACK_TIMEOUT_SECONDS": "5",
        "DRAIN_GRACE_SECONDS": "10",
        "LOG_LEVEL": "DEBUG",
        # Worker processes side by side (and other services) must not fight over one port.
        "METRICS_PORT": "0",
    }


@pytest.fixture
def source() -> InMemorySource:
    """The request queue, in memory: max 3 receives, the test moves its clock."""
    return InMemorySource()


@pytest.fixture
async def run_feedback(base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> RunFeedback:
    """`await run_feedback(source, **env)`: the worker as production composes it
    (`Worker.create`: the real LLM client, the signed callback over HTTP, the request store
    when REQUEST_TABLE_NAME is given) on `source`, until the source is empty (burst mode).
    Keyword arguments override single variables (`WORKER_CONCURRENCY="2"`); the LLM gate is
    off unless `LLM_GATE_ENABLED="true"` (in exact-latency mode the LLM's vLLM metrics stay
    still, and most tests count the client's own retries, which the gate's worker does not make);
    `clock=SimulatedClock(...)` runs the delivery budget's waits on simulated time."""

    async def run(
        source: InMemorySource, clock: SimulatedClock | None = None, **overrides: str
    ) -> Runner:
        plain = {"FEEDBACK_QUEUE_URL": "memory", "LLM_GATE_ENABLED": "false"}
        for name, value in {**base_env, **plain, **overrides}.items():
            monkeypatch.setenv(name, value)
        worker = await Worker.create(WorkerSettings(), source=source, clock=clock)
        await worker.run(burst=True)
        return worker.runner

    return run


@pytest.fixture
def sqs(aws_env: str) -> SQSClient:
    return boto3.client("sqs", endpoint_url=aws_env, region_name="us-east-1")


@pytest.fixture
def worker_env(feedback_queues: FeedbackQueues, base_env: dict[str, str]) -> dict[str, str]:
    """`base_env` on moto's queues."""
    return {
        **base_env,
        "FEEDBACK_QUEUE_URL": feedback_queues.requests,
        "RESULT_QUEUE_URL": feedback_queues.results,
    }


@pytest.fixture
async def start_worker(
    worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StartWorker]:
    """Start a Worker on moto in this event loop, configured through the environment like
    production; keyword arguments override single variables."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(**overrides: str) -> Worker:
        for name, value in {**worker_env, **overrides}.items():
            monkeypatch.setenv(name, value)
        worker = await Worker.create(WorkerSettings())
        running.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for worker, task in running:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)
