"""1. Worker throughput against an LLM with a fixed latency, at 1 to 128 messages in flight.

The real worker (`python -m feedback_worker`) consumes a pre-filled FIFO queue on moto and
calls the fake LLM, which answers every request after exactly LATENCY_S; results go to the
result queue. One message per member, so FIFO's one-in-flight-per-group rule never holds a
message back. Ideal throughput is in-flight ÷ latency: the LLM is never left idle.

The clock runs from the LLM's first request to the last message deleted from the queue, so
the ramp-up and the last delivery count against the worker. CPU is the worker process's own
(/proc), and the emulator's separately: on a 2-core machine they compete.

Baseline: the same steps one message at a time (receive 1, prompt, LLM, result, delete), the
consumer the worker replaces.
"""

import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devstack.processes import free_port
from devstack.queues import FeedbackQueues, create_feedback_queues
from feedback_worker.jobs import read_job
from feedback_worker.prompt import PromptTemplate
from feedback_worker.sqs import message_from_sqs
from llm_common.contracts import FeedbackResult
from openai import OpenAI

from bench.common import (
    Emulator,
    Receiver,
    callback_receiver,
    cpu_seconds,
    emulator,
    process,
    queued_job,
    running,
    worker_env,
)
from tests.support.fakes import SimulatedLlm
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

LATENCY_S = 1.0
IN_FLIGHT = (1, 8, 32, 64, 128)
ROUNDS = 16
"""Each level processes in-flight * ROUNDS messages: ROUNDS * LATENCY_S seconds at the ideal.
The start (the first receives) and the end (the last calls, begun late) cost about 0.8 s
whatever the length; over 8 rounds they alone took 0.1 of the ideal at 64 in flight."""
BACKLOG_AHEAD = 2.25
"""Messages kept queued or in flight, as a multiple of the worker's in-flight limit: enough
for everything the worker may hold (in flight, as many received ahead, some in delivery), so
a freed slot always finds a message waiting."""
MODEL = "bench-model"
TARGET_IN_FLIGHT = 64
TARGET_RATIO = 0.9


@dataclass(frozen=True)
class Throughput:
    in_flight: int
    messages: int
    seconds: float
    per_second: float
    ideal_per_second: float
    ratio: float
    worker_cpu_ms_per_message: float
    emulator_cpu_ms_per_message: float
    llm_max_in_flight: int


@dataclass(frozen=True)
class WorkerThroughput:
    latency_s: float
    rows: list[Throughput]
    baseline: Throughput
    target_in_flight: int
    target_ratio: float
    target_met: bool


def run() -> WorkerThroughput:
    port = free_port()
    llm = process(
        "fake-llm",
        "devstack.fakes.llm",
        "--port",
        str(port),
        "--latency",
        str(LATENCY_S),
        "--model",
        MODEL,
        ready_path="/v1/models",
        port=port,
    )
    fake = SimulatedLlm(f"http://127.0.0.1:{port}")
    with emulator("moto-worker") as aws, running(llm), callback_receiver() as callback:
        baseline = measure_sequential(aws, fake)
        rows = [measure_worker(aws, fake, callback, in_flight) for in_flight in IN_FLIGHT]
    at_target = next(row for row in rows if row.in_flight == TARGET_IN_FLIGHT)
    return WorkerThroughput(
        latency_s=LATENCY_S,
        rows=rows,
        baseline=baseline,
        target_in_flight=TARGET_IN_FLIGHT,
        target_ratio=TARGET_RATIO,
        target_met=at_target.ratio >= TARGET_RATIO,
    )


def measure_worker(
    aws: Emulator, llm: SimulatedLlm, callback: Receiver, in_flight: int
) -> Throughput:
    sqs = aws.sqs()
    queues = fresh_queues(sqs, f"w{in_flight}")
    messages = in_flight * ROUNDS
    backlog = Backlog(
        sqs, queues.requests, messages, ahead=math.ceil(BACKLOG_AHEAD * in_flight) + 10
    )
    backlog.top_up(done=0)
    llm.reset()
    worker = process(
        f"worker-{in_flight}",
        "feedback_worker",
        env=worker_env(
            aws, queues, callback, llm.base_url, MODEL, WORKER_CONCURRENCY=str(in_flight)
        ),
    )
    with running(worker):
        wait_until(
            lambda: llm.stats()["requests"] > 0,
            60,
            "the worker's first LLM call",
            every=0.005,
        )
        started = time.monotonic()
        worker_cpu, aws_cpu = cpu_seconds(worker.pid), cpu_seconds(aws.proc.pid)
        wait_until(
            lambda: backlog.top_up(llm.stats()["completions"]) >= messages,
            60 + 4 * ROUNDS * LATENCY_S,
            f"{messages} answers at {in_flight} in flight",
        )
        wait_until(lambda: queue_empty(sqs, queues.requests), 30, "the last deletes")
        seconds = time.monotonic() - started
        worker_cpu = cpu_seconds(worker.pid) - worker_cpu
        aws_cpu = cpu_seconds(aws.proc.pid) - aws_cpu
    return throughput(
        in_flight, messages, seconds, worker_cpu, aws_cpu, llm.stats()["max_in_flight"]
    )


class Backlog:
    """Keeps `ahead` messages queued or in flight beyond those answered, until `total` are sent.

    A queue that its consumers keep up with holds about what they can take next; a queue
    pre-filled with thousands would measure moto instead, whose receive rescans the whole queue
    for every message it returns.
    """

    def __init__(self, sqs: "SQSClient", queue_url: str, total: int, ahead: int) -> None:
        self._sqs, self._queue_url, self._total, self._ahead = sqs, queue_url, total, ahead
        self.sent = 0

    def top_up(self, done: int) -> int:
        """Send what keeps the backlog full; returns `done` for the caller's wait."""
        want = min(self._total, done + self._ahead)
        if want > self.sent:
            fill(self._sqs, self._queue_url, range(self.sent + 1, want + 1))
            self.sent = want
        return done


def measure_sequential(aws: Emulator, llm: SimulatedLlm) -> Throughput:
    """The baseline, on a thread of this process: its CPU is that thread's own."""
    sqs = aws.sqs()
    queues = fresh_queues(sqs, "seq")
    messages = ROUNDS
    fill(sqs, queues.requests, range(1, messages + 1))
    llm.reset()
    outcome: dict[str, float] = {}
    consumer = threading.Thread(
        target=consume_one_at_a_time, args=(sqs, queues, llm.base_url, messages, outcome)
    )
    aws_cpu = cpu_seconds(aws.proc.pid)
    consumer.start()
    consumer.join()
    aws_cpu = cpu_seconds(aws.proc.pid) - aws_cpu
    return throughput(
        1,
        messages,
        outcome["seconds"],
        outcome["cpu"],
        aws_cpu,
        llm.stats()["max_in_flight"],
    )


def consume_one_at_a_time(
    sqs: "SQSClient",
    queues: FeedbackQueues,
    llm_base_url: str,
    count: int,
    outcome: dict[str, float],
) -> None:
    prompt = PromptTemplate.from_file(None)
    llm = OpenAI(base_url=llm_base_url, api_key="EMPTY")
    done, started, cpu = 0, 0.0, 0.0
    while done < count:
        answer = sqs.receive_message(
            QueueUrl=queues.requests,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        for raw in answer.get("Messages", []):
            if done == 0:
                started, cpu = time.monotonic(), time.thread_time()
            job = read_job(message_from_sqs(raw))
            rendered = prompt.render(job.request)
            completion = llm.chat.completions.create(
                model=MODEL,
                temperature=0.7,
                max_tokens=400,
                messages=[
                    {"role": "system", "content": rendered.system},
                    {"role": "user", "content": rendered.user},
                ],
            )
            result = FeedbackResult(
                member_id=job.request.member_id,
                content=completion.choices[0].message.content or "",
                timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
                request_id=job.request_id,
            )
            sqs.send_message(
                QueueUrl=queues.results,
                MessageBody=result.model_dump_json(),
                MessageGroupId=str(result.member_id),
                MessageDeduplicationId=result.request_id,
            )
            sqs.delete_message(QueueUrl=queues.requests, ReceiptHandle=raw["ReceiptHandle"])
            done += 1
    llm.close()
    outcome["seconds"] = time.monotonic() - started
    outcome["cpu"] = time.thread_time() - cpu


def throughput(
    in_flight: int,
    messages: int,
    seconds: float,
    worker_cpu: float,
    aws_cpu: float,
    llm_max_in_flight: int,
) -> Throughput:
    per_second = messages / seconds
    ideal = in_flight / LATENCY_S
    return Throughput(
        in_flight=in_flight,
        messages=messages,
        seconds=round(seconds, 3),
        per_second=round(per_second, 2),
        ideal_per_second=ideal,
        ratio=round(per_second / ideal, 3),
        worker_cpu_ms_per_message=round(1000 * worker_cpu / messages, 2),
        emulator_cpu_ms_per_message=round(1000 * aws_cpu / messages, 2),
        llm_max_in_flight=llm_max_in_flight,
    )


def fresh_queues(sqs: "SQSClient", label: str) -> FeedbackQueues:
    return create_feedback_queues(sqs, prefix=f"bench-{label}-{uuid.uuid4().hex[:8]}")


def fill(sqs: "SQSClient", queue_url: str, members: range) -> None:
    """One request for each of `members`, as ingest sends them."""
    for start in range(0, len(members), 10):
        entries: list[SendMessageBatchRequestEntryTypeDef] = []
        for member_id in members[start : start + 10]:
            request_id = f"bench-{uuid.uuid4().hex}"
            entries.append(
                {
                    "Id": str(member_id),
                    "MessageBody": queued_job(member_id, request_id).model_dump_json(),
                    "MessageGroupId": str(member_id),
                    "MessageDeduplicationId": request_id,
                }
            )
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
        if failed:
            raise RuntimeError(f"could not fill the queue: {failed}")


def queue_empty(sqs: "SQSClient", queue_url: str) -> bool:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        attributes["ApproximateNumberOfMessages"] == "0"
        and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    )


if __name__ == "__main__":
    import json
    from dataclasses import asdict

    print(json.dumps(asdict(run()), indent=1))
