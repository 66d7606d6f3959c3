"""3. Ingest under 64 concurrent clients: requests per second, p99, SQS calls per request, and
what validating the body costs; then the same with the request store, and both one request at
a time (what the store adds to one POST, without the queueing of 64 clients).

`python -m feedback_ingest` (uvicorn, one process, as deployed) in front of moto; 64 async
clients post realistic weekly records (each a distinct member) until REQUESTS are answered.
With the store, DynamoDB is a moto process of its own (AWS_ENDPOINT_URL_DYNAMODB), as it is a
service of its own in AWS: its calls do not queue behind SQS's in one emulator.

Baselines, in the same run: the same clients against the same process's `GET /healthz` (the
HTTP floor: uvicorn and FastAPI without a body, validation or SQS); one SendMessage per
accepted request (the floor for a 202 that is only sent once SQS has the message); and
`json.loads` of the same body (parsing without the contract).
The SQS calls are counted on the boto3 client of an in-process app (same code, same settings):
every HTTP request it sends to SQS, retries included.

A consumer thread deletes what arrives, as the workers would: moto's SendMessage checks every
queued message (deduplication, queue attributes), so a queue left to grow to thousands would
measure moto, not ingest.
"""

import asyncio
import json
import os
import secrets
import threading
import time
import timeit
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx
from devstack.processes import free_port
from devstack.queues import create_feedback_queues
from devstack.serving import BackgroundServer
from feedback_ingest.app import create_app
from feedback_ingest.settings import IngestSettings
from llm_common.contracts import FeedbackRequest
from llm_common.requests_store import create_request_table

from bench.common import Emulator, cpu_seconds, emulator, percentile, process, request_body, running

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef

CLIENTS = 64
REQUESTS = 1_000
ONE_AT_A_TIME = 200
COUNTED_REQUESTS = 200
DRAINERS = 4
API_KEY = secrets.token_urlsafe(24)
"""The bench's own INGEST_API_KEYS: every call presents it, as the backend does."""
VALIDATIONS = 2_000


@dataclass(frozen=True)
class Load:
    requests: int
    ok: int
    per_second: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Ingest:
    """One ingest process under the load, then one request at a time."""

    concurrent: Load
    one_at_a_time: Load
    ingest_cpu_ms_per_request: float
    emulator_cpu_ms_per_request: float
    """SQS's moto, the consumer thread's calls included."""
    store_emulator_cpu_ms_per_request: float
    """DynamoDB's moto (0 without the store)."""


@dataclass(frozen=True)
class IngestLoad:
    clients: int
    feedback: Ingest
    with_store: Ingest
    baseline_healthz: Load
    sqs_calls_per_accepted: float
    baseline_sqs_calls_per_accepted: float
    store_calls_per_accepted: float
    validation_us: float
    baseline_json_loads_us: float
    body_bytes: int


def run() -> IngestLoad:
    body = json.dumps(request_body(1)).encode()
    validation, parsing = validation_cost(body)
    with emulator("moto-ingest") as aws, emulator("moto-dynamodb") as dynamodb:
        queue_url = create_feedback_queues(
            aws.sqs(), prefix=f"ingest-{uuid.uuid4().hex[:8]}"
        ).requests
        table = f"requests-{uuid.uuid4().hex[:8]}"
        create_request_table(dynamodb.dynamodb(), table)
        store_env = {"REQUEST_TABLE_NAME": table, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.endpoint}
        with drained(aws, queue_url):
            healthz, feedback = measure(aws, dynamodb, queue_url, {}, healthz=True)
            _, with_store = measure(aws, dynamodb, queue_url, store_env)
        calls = calls_per_request(aws, queue_url, {}, "sqs")
        store_calls = calls_per_request(aws, queue_url, store_env, "dynamodb")
    assert healthz is not None
    return IngestLoad(
        clients=CLIENTS,
        feedback=feedback,
        with_store=with_store,
        baseline_healthz=healthz,
        sqs_calls_per_accepted=calls,
        baseline_sqs_calls_per_accepted=1.0,
        store_calls_per_accepted=store_calls,
        validation_us=validation,
        baseline_json_loads_us=parsing,
        body_bytes=len(body),
    )


def measure(
    aws: Emulator, dynamodb: Emulator, queue_url: str, env: dict[str, str], healthz: bool = False
) -> tuple[Load | None, Ingest]:
    """One ingest process (with `env` added): GET /healthz under the load when asked, the
    POST load, then POSTs one at a time."""
    port = free_port()
    ingest = process(
        "ingest-store" if env else "ingest",
        "feedback_ingest",
        env={
            **aws.env(),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "FEEDBACK_QUEUE_URL": queue_url,
            "INGEST_API_KEYS": API_KEY,
            **env,
        },
        ready_path="/healthz",
        port=port,
    )
    url = f"http://127.0.0.1:{port}"
    with running(ingest):
        baseline = asyncio.run(load(url, REQUESTS, get_healthz)) if healthz else None
        pids = (ingest.pid, aws.proc.pid, dynamodb.proc.pid)
        before = [cpu_seconds(pid) for pid in pids]
        concurrent = asyncio.run(load(url, REQUESTS, post_feedback))
        used = [
            1000 * (cpu_seconds(pid) - b) / REQUESTS for pid, b in zip(pids, before, strict=True)
        ]
        one_at_a_time = asyncio.run(load(url, ONE_AT_A_TIME, post_feedback, clients=1))
    return baseline, Ingest(
        concurrent=concurrent,
        one_at_a_time=one_at_a_time,
        ingest_cpu_ms_per_request=round(used[0], 2),
        emulator_cpu_ms_per_request=round(used[1], 2),
        store_emulator_cpu_ms_per_request=round(used[2], 2),
    )


@contextmanager
def drained(aws: Emulator, queue_url: str) -> Iterator[None]:
    """A consumer that deletes what ingest queues, as the workers would."""
    sqs = aws.sqs()
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if messages:
                entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)
                ]
                sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)

    consumers = [threading.Thread(target=drain, daemon=True) for _ in range(DRAINERS)]
    for consumer in consumers:
        consumer.start()
    try:
        yield
    finally:
        stop.set()
        for consumer in consumers:
            consumer.join()


async def get_healthz(client: httpx.AsyncClient, number: int) -> int:
    return (await client.get("/healthz")).status_code


async def post_feedback(client: httpx.AsyncClient, number: int) -> int:
    response = await client.post("/ai/feedback", json=request_body(number + 1))
    return response.status_code


async def load(url: str, total: int, call: Any, clients: int = CLIENTS) -> Load:
    """`clients` clients calling one after another until `total` calls are answered."""
    latencies: list[float] = []
    statuses: list[int] = []
    numbers = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for number in numbers:
            started = time.perf_counter()
            statuses.append(await call(client, number))
            latencies.append(time.perf_counter() - started)

    headers = {"X-API-Key": API_KEY}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=30
    ) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        seconds = time.perf_counter() - started
    ok = sum(1 for status in statuses if status in (200, 202))
    return Load(
        requests=total,
        ok=ok,
        per_second=round(total / seconds, 1),
        p50_ms=round(1000 * percentile(latencies, 50), 1),
        p99_ms=round(1000 * percentile(latencies, 99), 1),
    )


def calls_per_request(
    aws: Emulator, queue_url: str, env: dict[str, str], service: Literal["sqs", "dynamodb"]
) -> float:
    """The ingest app in this process (with `env`), its boto3 client of `service` counted:
    every HTTP request it sends, retries included."""
    os.environ.update({**aws.env(), **env})
    settings = IngestSettings(
        feedback_queue_url=queue_url, aws_region="us-east-1", ingest_api_keys=API_KEY
    )
    app = create_app(settings)
    calls = 0

    def count(**_: Any) -> None:
        nonlocal calls
        calls += 1

    with BackgroundServer(app) as server:
        # The app's clients, made at start-up (private attributes: this is a probe).
        client = app.state.queue._sqs if service == "sqs" else app.state.store._dynamodb
        client.meta.events.register(f"before-send.{service}", count)
        result = asyncio.run(load(server.url, COUNTED_REQUESTS, post_feedback))
    for name in env:
        os.environ.pop(name)
    return round(calls / max(result.ok, 1), 3)


def validation_cost(body: bytes) -> tuple[float, float]:
    """Microseconds per body: the contract's validation, and json.loads alone."""
    validate = timeit.timeit(lambda: FeedbackRequest.model_validate_json(body), number=VALIDATIONS)
    parse = timeit.timeit(lambda: json.loads(body), number=VALIDATIONS)
    return round(1e6 * validate / VALIDATIONS, 1), round(1e6 * parse / VALIDATIONS, 1)


if __name__ == "__main__":
    from dataclasses import asdict

    print(json.dumps(asdict(run()), indent=1))
