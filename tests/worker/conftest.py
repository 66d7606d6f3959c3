"""Fixtures for the worker's tests: the fake servers over HTTP, the in-memory runs of the
feedback handler, and a factory for whole workers on moto."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import boto3
import pytest
from devstack.fakes import callback_receiver, fake_llm
from devstack.queues import FeedbackQueues
from devstack.serving import BackgroundServer
from feedback_worker.delivery import CallbackChannel, Delivery, delivery_budget
from feedback_worker.delivery.notices import notices_from_settings
from feedback_worker.handler import FeedbackHandler
from feedback_worker.llm import FeedbackWriter
from feedback_worker.memory import InMemorySource
from feedback_worker.prompt import PromptTemplate
from feedback_worker.records import RequestRecords
from feedback_worker.runner import Runner
from feedback_worker.settings import WorkerSettings
from feedback_worker.startup import open_request_store
from feedback_worker.worker import Worker, callback_http, runner_config
from mypy_boto3_sqs import SQSClient

from tests.support.clock import SimulatedClock
from tests.support.factories import RunFeedback, StartWorker
from tests.support.fakes import TEST_MODEL, TEST_SECRET, CallbackReceiver, FakeLlm


@pytest.fixture(scope="session")
def _fake_llm_server() -> Iterator[BackgroundServer]:
    with BackgroundServer(fake_llm.create_app(model=TEST_MODEL)) as server:
        yield server


@pytest.fixture(scope="session")
def _callback_server() -> Iterator[BackgroundServer]:
    with BackgroundServer(callback_receiver.create_app(TEST_SECRET)) as server:
        yield server


@pytest.fixture
def llm(_fake_llm_server: BackgroundServer) -> FakeLlm:
    client = FakeLlm(_fake_llm_server.url)
    client.reset()
    return client


@pytest.fixture
def receiver(_callback_server: BackgroundServer) -> CallbackReceiver:
    client = CallbackReceiver(_callback_server.url)
    client.reset()
    return client


@pytest.fixture
def base_env(llm: FakeLlm, receiver: CallbackReceiver) -> dict[str, str]:
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
async def run_feedback(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunFeedback]:
    """`await run_feedback(source, **env)`: the feedback handler (real LLM client, real signed
    callback over HTTP, the request store when REQUEST_TABLE_NAME is given) behind a runner on
    `source`, until the source is empty (burst mode). Keyword arguments override single
    variables (`WORKER_CONCURRENCY="2"`); `clock=SimulatedClock(...)` runs the delivery budget's
    waits on simulated time."""
    clients: list[FeedbackWriter] = []

    async def run(
        source: InMemorySource, clock: SimulatedClock | None = None, **overrides: str
    ) -> Runner:
        # A runner without the LLM gate: its client retries as the gate-less worker's does.
        plain = {"FEEDBACK_QUEUE_URL": "memory", "LLM_GATE_ENABLED": "false"}
        for name, value in {**base_env, **plain, **overrides}.items():
            monkeypatch.setenv(name, value)
        settings = WorkerSettings()
        writer = FeedbackWriter.from_settings(settings)
        clients.append(writer)
        assert settings.callback_endpoint is not None
        budget = delivery_budget(settings)
        if clock is not None:
            budget = replace(budget, now=clock.now, sleep=clock.sleep)
        async with callback_http(settings) as http:
            channel = CallbackChannel(
                http, settings.callback_endpoint, TEST_SECRET, settings.callback_max_attempts
            )
            records = RequestRecords(
                await open_request_store(settings), budget, notices_from_settings(settings, http)
            )
            handler = FeedbackHandler(
                writer, PromptTemplate.from_file(None), Delivery([channel], budget), records
            )
            runner = Runner(
                source, handler, runner_config(settings), on_dead_letter=handler.dead_lettered
            )
            await runner.run(burst=True)
        return runner

    yield run
    for writer in clients:
        await writer.close()


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
