"""Start-up: the DLQ is found or configured, and a worker that cannot work says so and exits;
one that cannot reach SQS yet waits."""

import asyncio
import os
import re
import subprocess
import sys
import uuid

import pytest
from devstack.processes import free_port
from feedback_worker.errors import ConfigurationError
from feedback_worker.settings import WorkerSettings
from feedback_worker.startup import LLM_WAIT_MAX_SECONDS
from feedback_worker.worker import Worker
from mypy_boto3_sqs import SQSClient

from tests.support.factories import StartWorker
from tests.support.fakes import SimulatedLlm
from tests.support.queues import enqueue_raw, queue_counts
from tests.support.waiting import eventually


def fifo_queue(sqs: SQSClient, name: str) -> str:
    unique = f"{name}-{uuid.uuid4().hex[:8]}.fifo"
    return sqs.create_queue(QueueName=unique, Attributes={"FifoQueue": "true"})["QueueUrl"]


def test_without_any_dlq_the_worker_refuses_to_start(
    sqs: SQSClient, worker_env: dict[str, str]
) -> None:
    no_redrive = fifo_queue(sqs, "startup-no-redrive")

    finished = subprocess.run(
        [sys.executable, "-m", "feedback_worker"],
        env={**worker_env, "FEEDBACK_QUEUE_URL": no_redrive} | _aws_and_path(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    assert "FEEDBACK_DLQ_URL" in finished.stdout + finished.stderr


def test_a_missing_setting_is_named_at_start_up(worker_env: dict[str, str]) -> None:
    env = {name: value for name, value in worker_env.items() if name != "LLM_MODEL"}

    finished = subprocess.run(
        [sys.executable, "-m", "feedback_worker"],
        env=env | _aws_and_path(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    assert "LLM_MODEL: Field required" in finished.stderr
    assert worker_env["CALLBACK_SECRET"] not in finished.stderr


async def test_a_configured_dlq_is_used_when_the_queue_has_no_redrive_policy(
    start_worker: StartWorker, sqs: SQSClient
) -> None:
    requests = fifo_queue(sqs, "startup-requests")
    dead_letters = fifo_queue(sqs, "startup-dead-letters")
    enqueue_raw(sqs, requests, "{not json", group="1")

    await start_worker(FEEDBACK_QUEUE_URL=requests, FEEDBACK_DLQ_URL=dead_letters)

    await eventually(lambda: queue_counts(sqs, dead_letters)[0] == 1)
    await eventually(lambda: queue_counts(sqs, requests) == (0, 0))  # the delete follows the send


def _aws_and_path() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name.startswith(("AWS_", "PATH"))}


async def test_a_standard_queue_is_refused(sqs: SQSClient, worker_env: dict[str, str]) -> None:
    standard = sqs.create_queue(QueueName=f"startup-standard-{uuid.uuid4().hex[:8]}")["QueueUrl"]

    with pytest.raises(ConfigurationError, match="is not a FIFO queue"):
        await create_worker(worker_env, FEEDBACK_QUEUE_URL=standard, FEEDBACK_DLQ_URL=standard)


async def test_a_dlq_that_is_the_request_queue_itself_is_refused(
    sqs: SQSClient, worker_env: dict[str, str]
) -> None:
    requests = fifo_queue(sqs, "startup-self-dlq")

    with pytest.raises(ConfigurationError, match="the DLQ is the request queue itself"):
        await create_worker(worker_env, FEEDBACK_QUEUE_URL=requests, FEEDBACK_DLQ_URL=requests)


async def test_a_missing_queue_is_refused_in_one_line(worker_env: dict[str, str]) -> None:
    missing = worker_env["FEEDBACK_QUEUE_URL"].replace(".fifo", "-missing.fifo")

    with pytest.raises(
        ConfigurationError, match=r"FEEDBACK_QUEUE_URL .*(NonExistentQueue|QueueDoesNotExist)"
    ):
        await create_worker(worker_env, FEEDBACK_QUEUE_URL=missing)


async def test_a_missing_request_table_is_refused_in_one_line(worker_env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="REQUEST_TABLE_NAME: table 'no-such-table'"):
        await create_worker(worker_env, REQUEST_TABLE_NAME="no-such-table")


async def test_a_model_the_llm_does_not_serve_is_refused(worker_env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="LLM_MODEL 'no-such-model' is not served"):
        await create_worker(worker_env, LLM_MODEL="no-such-model")


async def test_an_llm_base_url_without_v1_is_refused(
    worker_env: dict[str, str], llm: SimulatedLlm
) -> None:
    with pytest.raises(ConfigurationError, match="ends in /v1"):
        await create_worker(worker_env, LLM_BASE_URL=llm.url)


async def test_while_sqs_does_not_answer_start_up_waits_and_says_so(
    worker_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    dead_end = f"http://127.0.0.1:{free_port()}"
    waits = await start_up_waits(caplog, "SQS", 5, worker_env, AWS_ENDPOINT_URL=dead_end)
    assert len(waits) >= 2  # tried again after a backoff, not a traceback and an exit


async def test_while_the_llm_loads_start_up_asks_again_every_few_seconds(
    worker_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # The first pod of a burst waits here through vLLM's cold start (minutes): each try's delay
    # doubles from 1 s, then stays at the gate probe's 5 s (not start-up's 30 s), so it finds
    # vLLM at most 5 s after it serves. Four tries take 5.25-7 s; the fourth delay would be 6-8 s.
    loading = f"http://127.0.0.1:{free_port()}/v1"
    waits = await start_up_waits(caplog, "the LLM", 8.5, worker_env, LLM_BASE_URL=loading)
    delays = [float(found) for found in re.findall(r"next try in ([\d.]+)s", " ".join(waits))]
    assert len(delays) >= 4
    assert max(delays) <= LLM_WAIT_MAX_SECONDS
    assert delays[3] > LLM_WAIT_MAX_SECONDS / 2  # it doubled up to the cap, not stayed at 1 s


async def start_up_waits(
    caplog: pytest.LogCaptureFixture,
    what: str,
    for_s: float,
    env: dict[str, str],
    **overrides: str,
) -> list[str]:
    """The start-up's log lines for `what` not answering while it is given `for_s` seconds."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(create_worker(env, **overrides), timeout=for_s)
    waiting = f"start-up: {what} not answering"
    return [r.getMessage() for r in caplog.records if waiting in r.getMessage()]


async def create_worker(env: dict[str, str], **overrides: str) -> Worker:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**env, **overrides}.items():
            patch.setenv(name, value)
        # boto3 reads AWS_ENDPOINT_URL when the client is made.
        return await Worker.create(WorkerSettings())
