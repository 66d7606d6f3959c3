"""The result queue (FIFO): what the backend's result consumer reads."""

from botocore.exceptions import BotoCoreError, ClientError
from llm_common.contracts import FeedbackResult
from llm_common.telemetry.names import DeliveryOutcome, DeliveryTarget

from feedback_worker.delivery.attempt import delivery_attempt
from feedback_worker.errors import ResultQueueFailed
from feedback_worker.sqs import Sqs


class ResultQueueChannel:
    name = "result queue"

    def __init__(self, sqs: Sqs, url: str) -> None:
        self._sqs = sqs
        self._url = url

    async def send(self, result: FeedbackResult) -> DeliveryOutcome:
        with delivery_attempt(DeliveryTarget.QUEUE) as attempt:
            try:
                await self._sqs.call(
                    self._sqs.client.send_message,
                    QueueUrl=self._url,
                    MessageBody=result.model_dump_json(),
                    # Ordered per member, parallel across members; a redelivered request is
                    # dropped by SQS within its 5-minute deduplication window.
                    MessageGroupId=str(result.member_id),
                    MessageDeduplicationId=result.request_id,
                )
            except (BotoCoreError, ClientError) as error:
                raise ResultQueueFailed(f"result queue: {error}") from error
            attempt.settle(DeliveryOutcome.DELIVERED)
        return DeliveryOutcome.DELIVERED
