"""2. What the pipeline adds to a request's latency on the local stack (`make run`'s processes).

devstack's Stack with the fake LLM answering after exactly LLM_LATENCY_S. Requests are posted
to ingest one every PACE_S (a light load: this is latency, not throughput). Each request's id is
in a challenge title, so the fake LLM's request log (arrival times) can be matched to it:

- queue hop: from the 202 to the LLM call starting (ingest's send, SQS, the worker's receive,
  parsing, the prompt);
- delivery hop: from the LLM's answer (arrival + LLM_LATENCY_S) to the callback arriving at the
  receiver (the worker's response handling, the signed POST).

Baseline, in the same run: the bare hops, made directly by this process: an SQS send followed
by a receive of that message, and one signed POST to the same callback receiver.
"""

import re
import time
import uuid
from dataclasses import dataclass

import httpx
from devstack.processes import free_port
from devstack.stack import Ports, Stack, StackConfig
from llm_common.webhooks import signature_headers

from bench.common import LOG_DIR, percentile, request_body
from tests.support.fakes import SimulatedLlm
from tests.support.waiting import wait_until

LLM_LATENCY_S = 0.2
REQUESTS = 200
LLM_LOG_SIZE = 100
"""The fake LLM keeps its last 100 requests: they are read after every 100."""
PACE_S = 0.05
WARM_UP = 5
DIGITS_AS_LETTERS = str.maketrans("0123456789", "ghijklmnop")
TITLE = re.compile(r"- bench-title (\S+) ")


@dataclass(frozen=True)
class Percentiles:
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> "Percentiles":
        return cls(
            round(1000 * percentile(seconds, 50), 2), round(1000 * percentile(seconds, 99), 2)
        )


@dataclass(frozen=True)
class AddedLatency:
    requests: int
    llm_latency_s: float
    accepted_to_llm: Percentiles
    llm_to_callback: Percentiles
    baseline_queue_hop: Percentiles
    baseline_callback_post: Percentiles


def run() -> AddedLatency:
    ports = Ports(
        moto=free_port(),
        llm=free_port(),
        ingest=free_port(),
        callback=free_port(),
        qa_sync=free_port(),
    )
    stack = Stack(
        StackConfig(
            run_dir=LOG_DIR / "stack",
            ports=ports,
            llm="fake",
            llm_model="fake-llm",
            with_qa_sync=False,
        )
    )
    stack.start()
    try:
        llm = SimulatedLlm(f"http://127.0.0.1:{ports.llm}")
        warm_up(stack, llm)
        llm.control(latency_s=LLM_LATENCY_S)
        accepted, llm_started = post_requests(stack, llm)
        delivered = {
            d["webhook_id"]: d["received_at"]
            for d in httpx.get(f"{stack.callback_url}/deliveries").json()
        }
        queue_hop, callback_post = baselines(stack)
    finally:
        stack.stop()
    ids = sorted(accepted)
    return AddedLatency(
        requests=len(ids),
        llm_latency_s=LLM_LATENCY_S,
        accepted_to_llm=Percentiles.of([llm_started[i] - accepted[i] for i in ids]),
        llm_to_callback=Percentiles.of(
            [delivered[i] - llm_started[i] - LLM_LATENCY_S for i in ids]
        ),
        baseline_queue_hop=Percentiles.of(queue_hop),
        baseline_callback_post=Percentiles.of(callback_post),
    )


def post_requests(stack: Stack, llm: SimulatedLlm) -> tuple[dict[str, float], dict[str, float]]:
    """Post REQUESTS requests; when each was accepted (202) and when its LLM call started."""
    accepted: dict[str, float] = {}
    llm_started: dict[str, float] = {}
    with httpx.Client(
        base_url=stack.ingest_url, headers=stack.ingest_headers, timeout=10
    ) as client:
        for number in range(REQUESTS):
            # Letters only: the fake LLM echoes the title, and a run of hex digits can read as a
            # phone number to the worker's content checks (the request then fails, no callback).
            request_id = "bench-" + uuid.uuid4().hex.translate(DIGITS_AS_LETTERS)
            body = request_body(number + 1, request_id)
            body["personalChallenges"][0]["title"] = f"bench-title {request_id}"
            response = client.post("/ai/feedback", json=body)
            accepted[request_id] = time.time()
            if response.status_code != 202:
                raise RuntimeError(f"ingest answered {response.status_code}: {response.text}")
            if len(accepted) % LLM_LOG_SIZE == 0 or len(accepted) == REQUESTS:
                wait_until(lambda: delivered_count(stack) == len(accepted), 60, "the callbacks")
                llm_started.update(llm_arrivals(llm))
            time.sleep(PACE_S)
    return accepted, llm_started


def warm_up(stack: Stack, llm: SimulatedLlm) -> None:
    """A few requests through the fresh stack (the worker may still be starting), then forget
    them: the figures are the steady state's."""
    with httpx.Client(
        base_url=stack.ingest_url, headers=stack.ingest_headers, timeout=10
    ) as client:
        for number in range(WARM_UP):
            client.post("/ai/feedback", json=request_body(100_000 + number)).raise_for_status()
    wait_until(lambda: delivered_count(stack) == WARM_UP, 60, "the warm-up callbacks")
    httpx.post(f"{stack.callback_url}/reset").raise_for_status()
    llm.reset()


def delivered_count(stack: Stack) -> int:
    return int(httpx.get(f"{stack.callback_url}/stats").json()["accepted"])


def llm_arrivals(llm: SimulatedLlm) -> dict[str, float]:
    arrivals: dict[str, float] = {}
    for request in llm.requests():
        match = TITLE.search(request["messages"][-1]["content"])
        if match:
            arrivals[match.group(1)] = request["received_at"]
    return arrivals


def baselines(stack: Stack, samples: int = 100) -> tuple[list[float], list[float]]:
    """The bare queue hop (send, then receive that message) and a bare signed callback POST."""
    sqs = _sqs(stack)
    queue = sqs.create_queue(QueueName=f"bench-hop-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_hop, callback_post = [], []
    with httpx.Client(timeout=10) as client:
        for _ in range(samples):
            started = time.perf_counter()
            sqs.send_message(QueueUrl=queue, MessageBody="{}")
            for message in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            queue_hop.append(time.perf_counter() - started)
            request_id = f"bench-{uuid.uuid4().hex}"
            body = '{"memberId": 1, "content": "ok"}'
            started = time.perf_counter()
            client.post(
                f"{stack.callback_url}/baseline",
                content=body,
                headers=signature_headers(stack.callback_secret, request_id, body),
            )
            callback_post.append(time.perf_counter() - started)
    return queue_hop, callback_post


def _sqs(stack: Stack):  # type: ignore[no-untyped-def]
    import boto3

    env = stack.aws_env()
    return boto3.client(
        "sqs",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


if __name__ == "__main__":
    import json
    from dataclasses import asdict

    print(json.dumps(asdict(run()), indent=1))
