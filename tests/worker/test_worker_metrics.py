"""The worker's metrics move with its work: deliveries by outcome, retries, DLQ sends, tokens.

The worker runs in this process, so the counters are read from the registry its METRICS_PORT
serves (the served page itself is checked end to end in tests/e2e/test_e2e_metrics.py).
"""

from collections.abc import Callable

from devstack.queues import FeedbackQueues
from llm_common.telemetry.metrics import REGISTRY
from mypy_boto3_sqs import SQSClient

from tests.support.factories import StartWorker
from tests.support.fakes import TEST_MODEL, CallbackReceiver, SimulatedLlm
from tests.support.queues import enqueue, enqueue_raw, queue_counts
from tests.support.waiting import eventually

Reading = Callable[[], float]


def counter(name: str, **labels: str) -> Reading:
    def read() -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    return read


DELIVERIES = "feedback_worker_deliveries_total"
RETRIES = "feedback_worker_retries_total"
DLQ_SENDS = "feedback_worker_dlq_sends_total"
IN_FLIGHT = counter("feedback_worker_messages_in_flight")


def moved(readings: dict[str, Reading]) -> Callable[[], dict[str, float]]:
    """Take the readings now; the returned function gives each one's change since."""
    before = {name: read() for name, read in readings.items()}
    return lambda: {name: read() - before[name] for name, read in readings.items()}


async def test_a_delivered_message_counts_deliveries_tokens_and_queue_wait(
    start_worker: StartWorker, sqs: SQSClient, feedback_queues: FeedbackQueues
) -> None:
    change = moved(
        {
            "callback delivered": counter(DELIVERIES, target="callback", outcome="delivered"),
            "queue delivered": counter(DELIVERIES, target="queue", outcome="delivered"),
            "input tokens": counter(
                "feedback_worker_llm_tokens_total", model=TEST_MODEL, type="input"
            ),
            "output tokens": counter(
                "feedback_worker_llm_tokens_total", model=TEST_MODEL, type="output"
            ),
            "llm calls": counter(
                "feedback_worker_llm_duration_seconds_count", model=TEST_MODEL, outcome="ok"
            ),
            "queue waits": counter("feedback_worker_queue_wait_seconds_count"),
        }
    )
    enqueue(sqs, feedback_queues.requests, member_id=61, request_id="req-61")
    await start_worker()

    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))

    changes = change()
    assert changes["callback delivered"] == 1
    assert changes["queue delivered"] == 1
    assert changes["llm calls"] == 1
    assert changes["queue waits"] == 1
    assert changes["input tokens"] > 0
    assert changes["output tokens"] > 0
    # The delete ends inside the message's in-flight span: the gauge drops a moment later.
    await eventually(lambda: IN_FLIGHT() == 0)


async def test_a_transient_callback_failure_counts_a_retry_and_the_failed_attempt(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
) -> None:
    change = moved(
        {
            "transient": counter(DELIVERIES, target="callback", outcome="transient_failure"),
            "delivered": counter(DELIVERIES, target="callback", outcome="delivered"),
            "retries": counter(RETRIES, operation="callback"),
        }
    )
    receiver.script(status=503, times=1, retry_after="0")
    enqueue(sqs, feedback_queues.requests, member_id=62, request_id="req-62")
    await start_worker()

    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))

    assert change() == {"transient": 1, "delivered": 1, "retries": 1}


async def test_a_refused_callback_and_a_poison_message_count_dlq_sends_by_reason(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
) -> None:
    change = moved(
        {
            "permanent": counter(DELIVERIES, target="callback", outcome="permanent_failure"),
            "dlq permanent": counter(DLQ_SENDS, reason="permanent_failure"),
            "dlq invalid": counter(DLQ_SENDS, reason="invalid_message"),
        }
    )
    receiver.script(status=404)
    enqueue(sqs, feedback_queues.requests, member_id=63, request_id="req-63")
    enqueue_raw(sqs, feedback_queues.requests, "not json", group="64")
    # The callback alone: a refusal fails the request only when no other channel took it.
    await start_worker(RESULT_QUEUE_URL="")

    await eventually(lambda: queue_counts(sqs, feedback_queues.dead_letters)[0] == 2)

    await eventually(lambda: change() == {"permanent": 1, "dlq permanent": 1, "dlq invalid": 1})


async def test_an_llm_answering_200_with_an_error_body_counts_failed_calls_not_answers(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    llm: SimulatedLlm,
    receiver: CallbackReceiver,
) -> None:
    # The LLM error-ratio alert reads these: an error object under HTTP 200 is no answer.
    change = moved(
        {
            "ok": counter(
                "feedback_worker_llm_duration_seconds_count", model=TEST_MODEL, outcome="ok"
            ),
            "error": counter(
                "feedback_worker_llm_duration_seconds_count", model=TEST_MODEL, outcome="error"
            ),
        }
    )
    llm.control(fail_next=2, fail_status=200)
    enqueue(sqs, feedback_queues.requests, member_id=65, request_id="req-65")
    await start_worker()

    await eventually(lambda: [d["webhook_id"] for d in receiver.deliveries()] == ["req-65"])

    assert change() == {"ok": 1, "error": 2}
    assert queue_counts(sqs, feedback_queues.dead_letters) == (0, 0)
