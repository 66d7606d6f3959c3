"""Where results go: the result queue and/or the signed callback, each switchable off, and
the delivery budget that retries them (budget.py)."""

from typing import Protocol

import httpx2
from llm_common.contracts import FeedbackResult
from llm_common.telemetry.names import DeliveryOutcome

from feedback_worker.delivery.budget import Delivery, DeliveryBudget, DeliveryReport
from feedback_worker.delivery.callback import CallbackChannel
from feedback_worker.delivery.result_queue import ResultQueueChannel
from feedback_worker.settings import WorkerSettings
from feedback_worker.sqs import Sqs

__all__ = [
    "CallbackChannel",
    "Channel",
    "Delivery",
    "DeliveryBudget",
    "DeliveryReport",
    "ResultQueueChannel",
    "channels_from_settings",
    "delivery_budget",
]


class Channel(Protocol):
    name: str

    async def send(self, result: FeedbackResult) -> DeliveryOutcome:
        """Deliver `result` (DELIVERED, or DUPLICATE when the receiver had it already), or
        raise RetryLater / DeadLetter (feedback_worker.errors)."""


def channels_from_settings(
    settings: WorkerSettings, sqs: Sqs, http: httpx2.AsyncClient
) -> list[Channel]:
    channels: list[Channel] = []
    if settings.result_queue_url:
        channels.append(ResultQueueChannel(sqs, settings.result_queue_url))
    if settings.callback_endpoint:
        channels.append(
            CallbackChannel(
                http,
                settings.callback_endpoint,
                settings.callback_secret.get_secret_value(),
                settings.callback_max_attempts,
            )
        )
    return channels


def delivery_budget(settings: WorkerSettings) -> DeliveryBudget:
    return DeliveryBudget(
        settings.delivery_retry_seconds,
        settings.retry_delay_seconds,
        settings.delivery_retry_max_delay_seconds,
    )
