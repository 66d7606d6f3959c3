"""Fixtures for the worker's tests: real fake servers over HTTP, moto, and a worker factory."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import boto3
import pytest
from devstack import callback_receiver, fake_llm
from devstack.queues import FeedbackQueues
from devstack.serving import BackgroundServer
from feedback_worker.settings import WorkerSettings
from feedback_worker.worker import Worker
from mypy_boto3_sqs import SQSClient
from worker_helpers import TEST_MODEL, TEST_SECRET, CallbackReceiver, FakeLlm

StartWorker = Callable[..., Awaitable[Worker]]


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
def sqs(aws_env: str) -> SQSClient:
    return boto3.client("sqs", endpoint_url=aws_env, region_name="us-east-1")


@pytest.fixture
def worker_env(
    feedback_queues: FeedbackQueues, llm: FakeLlm, receiver: CallbackReceiver
) -> dict[str, str]:
    """Test settings as environment variables: short waits, short delays, small retries."""
    return {
        "FEEDBACK_QUEUE_URL": feedback_queues.requests,
        "RESULT_QUEUE_URL": feedback_queues.results,
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
async def start_worker(
    worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StartWorker]:
    """Start a Worker in this event loop, configured through the environment like production;
    keyword arguments override single variables (`start_worker(WORKER_CONCURRENCY="2")`)."""
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
