"""Failure notices: a signed callback to CALLBACK_FAILURE_PATH when a request ends `failed` or
`expired`, so the backend learns of it without polling. Off unless the path is set.

A notice is best effort: CALLBACK_MAX_ATTEMPTS quick attempts, then it is given up (logged and
counted as the last attempt's outcome in feedback_worker_deliveries_total); the request's record
and the DLQ keep the failure either way.
"""

import logging

import httpx2
from llm_common.contracts import FailureNotice
from llm_common.telemetry.names import DeliveryTarget

from feedback_worker.delivery.callback import SignedWebhook
from feedback_worker.errors import DeadLetter, RetryLater
from feedback_worker.settings import WorkerSettings

log = logging.getLogger(__name__)


class FailureNotices:
    def __init__(self, http: httpx2.AsyncClient, url: str, secret: str, max_attempts: int) -> None:
        self._webhook = SignedWebhook(
            http, url, secret, max_attempts, DeliveryTarget.FAILURE_NOTICE, "the notice"
        )

    async def send(self, notice: FailureNotice) -> None:
        try:
            await self._webhook.post(notice.webhook_id, notice.model_dump_json())
        except (DeadLetter, RetryLater) as error:
            log.warning("failure notice for %s not delivered: %s", notice.request_id, error)


def notices_from_settings(
    settings: WorkerSettings, http: httpx2.AsyncClient
) -> FailureNotices | None:
    """The notices to CALLBACK_FAILURE_PATH, signed like the callback; None when it is unset."""
    if settings.failure_endpoint is None:
        return None
    return FailureNotices(
        http,
        settings.failure_endpoint,
        settings.callback_secret.get_secret_value(),
        settings.callback_max_attempts,
    )
