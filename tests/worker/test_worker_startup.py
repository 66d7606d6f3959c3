"""Start-up: the DLQ is found or configured, and a worker that cannot work says so and exits."""

import os
import subprocess
import sys
import uuid

from conftest import StartWorker
from mypy_boto3_sqs import SQSClient
from worker_helpers import enqueue_raw, eventually, queue_counts


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
    assert queue_counts(sqs, requests) == (0, 0)


def _aws_and_path() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name.startswith(("AWS_", "PATH"))}
