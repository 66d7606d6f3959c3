"""GET /metrics on ingest says how many requests wait and how many are dead-lettered.

The depths come from moto's SQS over HTTP; the DLQ is found through the request queue's
RedrivePolicy, as in production.
"""

from typing import TYPE_CHECKING

import boto3
from devstack.queues import FeedbackQueues
from feedback_ingest.queue_depth import QueueDepthPoller
from feedback_ingest.settings import IngestSettings
from llm_common.telemetry import metrics
from prometheus_client import generate_latest

from tests.support.ingest import Serve
from tests.support.scrape import Scrape

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

DEPTH = "feedback_sqs_messages"


def _send(sqs: "SQSClient", queue_url: str, count: int) -> None:
    for n in range(count):
        sqs.send_message(
            QueueUrl=queue_url, MessageBody="{}", MessageGroupId="g", MessageDeduplicationId=f"d{n}"
        )


async def test_the_waiting_and_dead_lettered_messages_are_on_metrics(
    serve: Serve, settings: IngestSettings, feedback_queues: FeedbackQueues, aws_env: str
) -> None:
    sqs = boto3.client("sqs", endpoint_url=aws_env, region_name="us-east-1")
    _send(sqs, feedback_queues.requests, 3)
    _send(sqs, feedback_queues.dead_letters, 1)
    poller = QueueDepthPoller(settings.feedback_queue_url, settings.aws_region, 60)

    poller.poll_once()

    async with serve(settings.model_copy(update={"queue_depth_interval_seconds": 0})) as client:
        scrape = Scrape((await client.get("/metrics")).text)
    assert scrape.value(DEPTH, queue="requests", state="visible") == 3
    assert scrape.value(DEPTH, queue="requests", state="in_flight") == 0
    assert scrape.value(DEPTH, queue="dead_letter", state="visible") == 1
    poller.close()


async def test_a_queue_that_does_not_answer_leaves_no_depth_behind(
    settings: IngestSettings, feedback_queues: FeedbackQueues, aws_env: str
) -> None:
    poller = QueueDepthPoller(settings.feedback_queue_url, settings.aws_region, 60)
    poller.poll_once()
    gone = QueueDepthPoller(feedback_queues.requests + "-deleted", settings.aws_region, 60)

    gone.poll_once()

    # A stale figure would read as a healthy queue: no series at all is what absent() sees.
    exposition = generate_latest(metrics.REGISTRY).decode()
    assert "feedback_sqs_messages{" not in exposition
    poller.close()
    gone.close()
