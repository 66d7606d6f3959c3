"""A slow LLM must never make a message visible again while it is being worked on."""

from devstack.queues import FeedbackQueues
from mypy_boto3_sqs import SQSClient

from tests.support.factories import StartWorker
from tests.support.fakes import CallbackReceiver, SimulatedLlm
from tests.support.queues import enqueue, queue_counts
from tests.support.waiting import eventually


async def test_a_message_slower_than_its_visibility_timeout_is_delivered_exactly_once(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    llm: SimulatedLlm,
    receiver: CallbackReceiver,
) -> None:
    llm.control(latency_s=3.5)
    enqueue(sqs, feedback_queues.requests, member_id=31, request_id="req-31")
    # Two workers poll the queue: without the heartbeat either would receive it again after 2 s.
    await start_worker(VISIBILITY_TIMEOUT_SECONDS="2")
    await start_worker(VISIBILITY_TIMEOUT_SECONDS="2")

    await eventually(lambda: receiver.statuses() == [200])
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))

    assert llm.stats()["requests"] == 1
    assert len(receiver.deliveries()) == 1
