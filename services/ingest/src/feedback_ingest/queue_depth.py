"""The request queue's and its dead-letter queue's depth, as Prometheus gauges.

Ingest publishes them because it always runs: the workers may be at zero (KEDA with
`minReplicas: 0`), and a backlog nobody consumes is exactly what the alerts must see. SQS's API
has the counts (GetQueueAttributes) but not the age of the oldest message, which only CloudWatch
has; the alerts take the wait from the worker's `feedback_worker_queue_wait_seconds` instead
(docs/observability.md, Queue depth). One GetQueueAttributes per queue every
`QUEUE_DEPTH_INTERVAL_SECONDS` (15 s: 11,520 calls a day per pod, well inside SQS's free tier).
The DLQ is the one the request queue's RedrivePolicy names, so nothing else needs configuring.
"""

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from botocore.exceptions import BotoCoreError, ClientError
from llm_common.aws import aws_client
from llm_common.telemetry import metrics
from llm_common.telemetry.names import QueueMessageState, QueueRole

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeFilterType

logger = logging.getLogger(__name__)

_STATE_ATTRIBUTES: "dict[QueueMessageState, QueueAttributeFilterType]" = {
    QueueMessageState.VISIBLE: "ApproximateNumberOfMessages",
    QueueMessageState.IN_FLIGHT: "ApproximateNumberOfMessagesNotVisible",
    QueueMessageState.DELAYED: "ApproximateNumberOfMessagesDelayed",
}


class QueueDepthPoller:
    def __init__(self, queue_url: str, region: str, interval_seconds: float) -> None:
        self._queue_url = queue_url
        self._interval = interval_seconds
        # Its own small client: a slow poll never takes a connection a request is waiting for.
        self._sqs: SQSClient = aws_client(
            "sqs", region, max_pool_connections=1, read_timeout=5, max_attempts=2
        )
        self._dlq_url: str | None = None

    async def run(self) -> None:
        """Poll until cancelled (the app's lifespan ends)."""
        while True:
            await anyio.to_thread.run_sync(self.poll_once)
            await anyio.sleep(self._interval)

    def poll_once(self) -> None:
        """Set the gauges from SQS; a queue that does not answer keeps no series (stale data
        would read as a healthy queue) and is logged."""
        try:
            attributes = self._attributes(self._queue_url, "RedrivePolicy")
            _publish(QueueRole.REQUESTS, attributes)
            dlq_url = self._dead_letter_url(attributes.get("RedrivePolicy"))
            if dlq_url is not None:
                _publish(QueueRole.DEAD_LETTER, self._attributes(dlq_url))
        except (BotoCoreError, ClientError) as error:
            logger.warning("queue depth unavailable: %s", error)
            metrics.SQS_MESSAGES.clear()

    def close(self) -> None:
        self._sqs.close()

    def _attributes(
        self, queue_url: str, *extra: "QueueAttributeFilterType"
    ) -> "Mapping[str, str]":
        names = [*_STATE_ATTRIBUTES.values(), *extra]
        response = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
        return {str(name): value for name, value in response.get("Attributes", {}).items()}

    def _dead_letter_url(self, redrive_policy: str | None) -> str | None:
        if self._dlq_url is None and redrive_policy:
            # arn:aws:sqs:<region>:<account>:<name>
            *_, account, name = json.loads(redrive_policy)["deadLetterTargetArn"].split(":")
            response = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            self._dlq_url = response["QueueUrl"]
        return self._dlq_url


def _publish(role: QueueRole, attributes: "Mapping[str, str]") -> None:
    for state, attribute in _STATE_ATTRIBUTES.items():
        metrics.SQS_MESSAGES.labels(role, state).set(int(attributes.get(attribute, 0)))
