"""Standard Webhooks signing (https://www.standardwebhooks.com/), shared by sender and receivers.

The secret is the `whsec_<base64>` form the Standard Webhooks libraries use on both sides.
"""

import time
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["WebhookVerificationError", "signature_headers", "verify_signature"]


def signature_headers(secret: str, webhook_id: str, body: str) -> dict[str, str]:
    """The `webhook-id`, `webhook-timestamp` and `webhook-signature` headers for `body`."""
    timestamp = int(time.time())
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def verify_signature(secret: str, body: bytes | str, headers: dict[str, str]) -> None:
    """Raise `WebhookVerificationError` unless `body` is signed with `secret` within 5 minutes."""
    Webhook(secret).verify(body, headers)
