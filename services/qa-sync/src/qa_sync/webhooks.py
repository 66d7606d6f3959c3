"""OpenAI's batch webhooks, verified the Standard Webhooks way and taken once per webhook-id.

The event only names the batch (`data.id`); the sync fetches the batch for its files. Taking
the event is cheap (one INSERT); the sync runs in the background so OpenAI gets its 2xx fast.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import openai
from openai.types.webhooks import (
    BatchCancelledWebhookEvent,
    BatchCompletedWebhookEvent,
    BatchExpiredWebhookEvent,
    BatchFailedWebhookEvent,
)

from qa_sync.registry.jobs import Registry

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
"""The Standard Webhooks headers; a request without them is refused before its body is read."""

BATCH_EVENTS = (
    BatchCompletedWebhookEvent,
    BatchFailedWebhookEvent,
    BatchExpiredWebhookEvent,
    BatchCancelledWebhookEvent,
)


class WebhookNotConfigured(Exception):
    """No OPENAI_WEBHOOK_SECRET: nothing can be verified, so nothing is accepted."""


class WebhookRejected(Exception):
    """Missing headers, a signature that does not match, or a timestamp outside the tolerance."""


@dataclass(frozen=True)
class WebhookReceipt:
    webhook_id: str
    event_type: str
    batch_id: str | None
    duplicate: bool = False

    @property
    def wants_sync(self) -> bool:
        return self.batch_id is not None and not self.duplicate


class WebhookReceiver:
    def __init__(self, client: openai.OpenAI, secret: str | None, registry: Registry) -> None:
        self._client = client
        self._secret = secret
        self._registry = registry

    def check_configured(self) -> None:
        if self._secret is None:
            raise WebhookNotConfigured("OPENAI_WEBHOOK_SECRET is not set")

    def receive(self, body: bytes, headers: Mapping[str, str]) -> WebhookReceipt:
        self.check_configured()
        lowered = {name.lower(): value for name, value in headers.items()}
        try:
            # unwrap verifies first, with OpenAI's (and Standard Webhooks') 5-minute tolerance.
            event = self._client.webhooks.unwrap(body, lowered, secret=self._secret)
        except (openai.InvalidWebhookSignatureError, ValueError) as error:
            raise WebhookRejected(str(error)) from error
        webhook_id = lowered["webhook-id"]
        if not isinstance(event, BATCH_EVENTS):
            return WebhookReceipt(webhook_id, str(getattr(event, "type", "unknown")), None)
        first_time = self._registry.record_webhook(webhook_id, event.type, event.data.id)
        return WebhookReceipt(webhook_id, event.type, event.data.id, duplicate=not first_time)
