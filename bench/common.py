"""What every measurement shares: the SQS/S3 emulators and fake servers as processes on free
ports, a process's CPU time, percentiles and a realistic request."""

import os
import statistics
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import boto3
from devstack.processes import ManagedProcess, free_port, python_module
from devstack.stack import AWS_REGION, EMULATOR_CREDENTIALS, new_webhook_secret
from llm_common.contracts import FeedbackJob, FeedbackRequest
from llm_common.contracts.example import example_weekly_record

if TYPE_CHECKING:
    from devstack.queues import FeedbackQueues
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / ".run" / "bench"
"""Every process's log, for when a figure looks wrong (`make clean` removes it)."""

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used so far (/proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which is in parentheses and may contain spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated; what p50/p99 mean in the tables."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": AWS_REGION,
        "AWS_DEFAULT_REGION": AWS_REGION,
        **EMULATOR_CREDENTIALS,
    }


def process(
    name: str,
    module: str,
    *args: str,
    env: dict[str, str] | None = None,
    ready_path: str | None = None,
    port: int | None = None,
) -> ManagedProcess:
    """`python -m module args` with its log under .run/bench/, not started yet."""
    ready_url = f"http://127.0.0.1:{port}{ready_path}" if ready_path and port else None
    return ManagedProcess(
        name=name,
        argv=python_module(module, *args),
        log_path=LOG_DIR / f"{name}.log",
        env=env or {},
        ready_url=ready_url,
    )


@contextmanager
def running(proc: ManagedProcess, timeout: float = 60.0) -> Iterator[ManagedProcess]:
    """`proc` started and ready, stopped at the end; stopped too when it is not ready in time
    (a vLLM not up within its timeout on a busy host was left running, 5.6 GB)."""
    try:
        proc.start(timeout)
        yield proc
    finally:
        proc.stop()


class ClientArgs(TypedDict):
    """boto3.client's keywords for the emulator: typed per key, so that mypy --strict matches
    them to boto3-stubs' overloads (a dict[str, str] matches none)."""

    endpoint_url: str
    region_name: str
    aws_access_key_id: str
    aws_secret_access_key: str


class Emulator:
    """An AWS emulator in its own process, as the services see it locally: moto's server (SQS,
    S3, DynamoDB; `emulator`) or fauxqs (SQS; `fauxqs`)."""

    def __init__(self, proc: ManagedProcess, port: int) -> None:
        self.proc = proc
        self.endpoint = f"http://127.0.0.1:{port}"

    def sqs(self) -> "SQSClient":
        return boto3.client("sqs", **self._client_args())

    def dynamodb(self) -> "DynamoDBClient":
        return boto3.client("dynamodb", **self._client_args())

    def _client_args(self) -> "ClientArgs":
        return {
            "endpoint_url": self.endpoint,
            "region_name": AWS_REGION,
            "aws_access_key_id": EMULATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": EMULATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }

    def env(self) -> dict[str, str]:
        return aws_env(self.endpoint)


@contextmanager
def emulator(name: str = "moto") -> Iterator[Emulator]:
    port = free_port()
    proc = process(
        name,
        "bench.moto_server",
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
        ready_path="/moto-api/",
        port=port,
    )
    with running(proc):
        yield Emulator(proc, port)


FAUXQS = ROOT / "bench" / "fauxqs"
"""fauxqs 1.9.2 (npm, MIT), pinned by package-lock.json; `make bench` installs it (npm ci)."""


@contextmanager
def fauxqs(name: str = "fauxqs") -> Iterator[Emulator]:
    """fauxqs's SQS in its own Node process: what a burst of 20,000 needs.

    moto's cost per call grows with the queue's depth (a SendMessageBatch of 10 took 22.7 s at
    20,000 deep), fauxqs's does not (1.2 ms a batch, 2.2 ms a receive + delete: docs/benchmarks.md).
    Its known faults do not touch the burst: a FIFO receive returns one message per group (each
    request is its own group here) and only the last 10,000 deduplication ids are kept (each
    request has its own)."""
    if not (FAUXQS / "node_modules" / "fauxqs").is_dir():
        raise RuntimeError(
            f"fauxqs is not installed: run `npm ci --prefix {FAUXQS.relative_to(ROOT)}` "
            "(`make bench` does), or choose moto (`--burst-sqs moto`)"
        )
    port = free_port()
    proc = ManagedProcess(
        name=name,
        argv=["node", str(FAUXQS / "serve.mjs"), str(port)],
        log_path=LOG_DIR / f"{name}.log",
        env={"AWS_REGION": AWS_REGION},
        ready_url=f"http://127.0.0.1:{port}/health",
    )
    with running(proc):
        yield Emulator(proc, port)


def request_body(member_id: int, request_id: str | None = None) -> dict[str, Any]:
    """The backend's realistic weekly record (the contracts' example) for one member."""
    return example_weekly_record(request_id or f"{member_id}-bench-{uuid.uuid4().hex}", member_id)


def queued_job(member_id: int, request_id: str) -> FeedbackJob:
    """The message ingest would put on the queue for this member's request."""
    request = FeedbackRequest.model_validate(request_body(member_id, request_id))
    return FeedbackJob.model_validate(
        {**dict(request), "request_id": request_id, "accepted_at": datetime.now(UTC)}
    )


@dataclass(frozen=True)
class Receiver:
    url: str
    secret: str


def worker_env(
    aws: Emulator,
    queues: "FeedbackQueues",
    callback: Receiver,
    llm_base_url: str,
    model: str,
    **settings: str,
) -> dict[str, str]:
    """A worker's environment on the bench's emulator, queues, receiver and LLM; `settings`
    add or override single variables (WORKER_CONCURRENCY="64")."""
    return {
        **aws.env(),
        "FEEDBACK_QUEUE_URL": queues.requests,
        "FEEDBACK_DLQ_URL": queues.dead_letters,
        "CALLBACK_URL": callback.url,
        "CALLBACK_SECRET": callback.secret,
        "LLM_BASE_URL": llm_base_url,
        "LLM_MODEL": model,
        **settings,
    }


@contextmanager
def callback_receiver() -> Iterator[Receiver]:
    """devstack's callback receiver (verifies every signature), as the backend's stand-in."""
    port, secret = free_port(), new_webhook_secret()
    proc = process(
        "callback-receiver",
        "devstack.fakes.callback_receiver",
        "--port",
        str(port),
        env={"CALLBACK_SECRET": secret},
        ready_path="/stats",
        port=port,
    )
    with running(proc):
        yield Receiver(f"http://127.0.0.1:{port}", secret)
