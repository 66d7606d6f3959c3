"""Where results go: the result queue and/or the signed callback, each switchable off."""

from typing import Protocol

import httpx
from llm_common.contracts import FeedbackResult

from feedback_worker.delivery.callback import CallbackChannel
from feedback_worker.delivery.result_queue import ResultQueueChannel
from feedback_worker.settings import WorkerSettings
from feedback_worker.sqs import Sqs

__all__ = ["CallbackChannel", "Channel", "ResultQueueChannel", "channels_from_settings"]


class Channel(Protocol):
    name: str

    async def send(self, result: FeedbackResult) -> None:
        """Deliver `result`, or raise RetryLater / DeadLetter (feedback_worker.errors)."""


def channels_from_settings(
    settings: WorkerSettings, sqs: Sqs, http: httpx.AsyncClient
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
