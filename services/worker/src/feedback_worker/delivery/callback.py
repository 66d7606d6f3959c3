"""The signed HTTP callback to the backend (Standard Webhooks; docs/backend-contract.md, Callback).

2xx is delivered and so is 409 (the backend already has it). 400 and 404 are permanent. 408,
429, 5xx, timeouts and connection errors are retried here with exponential backoff and jitter,
honouring Retry-After, up to CALLBACK_MAX_ATTEMPTS; any other answer (401 from a wrong secret,
say) is a configuration problem: the delivery is retried later instead.
"""

import asyncio
import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx2
from llm_common.contracts import FeedbackResult
from llm_common.telemetry import metrics
from llm_common.telemetry.names import DeliveryOutcome, DeliveryTarget, RetryOperation
from llm_common.webhooks import signature_headers

from feedback_worker.backoff import backoff_delay
from feedback_worker.delivery.attempt import DeliveryAttempt, delivery_attempt
from feedback_worker.errors import CallbackFailed, CallbackRejected

log = logging.getLogger(__name__)

ALREADY_DELIVERED = 409
PERMANENT = frozenset({400, 404})
TRANSIENT = frozenset({408, 429})
BACKOFF_BASE_SECONDS = 0.5
# A longer wait than this holds a worker slot for nothing: the delivery is retried later with the
# wait the backend asked for instead.
MAX_WAIT_SECONDS = 30.0
MAX_BODY_IN_REASON = 200


class SignedWebhook:
    """POSTs signed bodies to one URL: the result callback and the failure notices share it."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        url: str,
        secret: str,
        max_attempts: int,
        target: DeliveryTarget,
        what: str,
    ) -> None:
        """`what` names the body in failure reasons ("the result")."""
        self._http = http
        self._url = url
        self._secret = secret
        self._max_attempts = max_attempts
        self._target = target
        self._what = what

    async def post(self, webhook_id: str, body: str) -> DeliveryOutcome:
        """DELIVERED or DUPLICATE (409); CallbackRejected for 400/404, CallbackFailed once the
        attempts are spent on transient answers."""
        problem, wait = "no attempt", None
        for attempt in range(1, self._max_attempts + 1):
            with delivery_attempt(self._target, attempt) as record:
                problem, wait = await self._attempt(webhook_id, body, record)
            if record.outcome in (DeliveryOutcome.DELIVERED, DeliveryOutcome.DUPLICATE):
                return record.outcome
            delay = (
                wait
                if wait is not None
                else backoff_delay(attempt, BACKOFF_BASE_SECONDS, MAX_WAIT_SECONDS)
            )
            if attempt == self._max_attempts or delay > MAX_WAIT_SECONDS:
                break
            log.info(
                "%s for %s: %s; attempt %d/%d in %.1fs",
                self._target,
                webhook_id,
                problem,
                attempt + 1,
                self._max_attempts,
                delay,
            )
            metrics.WORKER_RETRIES.labels(RetryOperation.CALLBACK).inc()
            await asyncio.sleep(delay)
        raise CallbackFailed(
            f"{self._target}: {problem} (after {attempt} attempt(s))", retry_after=wait
        )

    async def _attempt(
        self, webhook_id: str, body: str, record: DeliveryAttempt
    ) -> tuple[str, float | None]:
        """What went wrong and the wait the backend asked for; ("", None) once delivered."""
        headers = {
            "content-type": "application/json",
            # Signed per attempt: the timestamp must be fresh for the receiver's tolerance window.
            **signature_headers(self._secret, webhook_id, body),
        }
        try:
            response = await self._http.post(self._url, content=body.encode(), headers=headers)
        except httpx2.TransportError as error:  # timeouts and connection errors
            record.settle(DeliveryOutcome.TRANSIENT_FAILURE, error)
            return type(error).__name__, None
        status = response.status_code
        if response.is_success or status == ALREADY_DELIVERED:
            record.settle(
                DeliveryOutcome.DELIVERED if response.is_success else DeliveryOutcome.DUPLICATE
            )
            return "", None
        reason = f"HTTP {status}: {response.text[:MAX_BODY_IN_REASON]}"
        if status in PERMANENT:
            raise CallbackRejected(f"{self._target} rejected {self._what}: {reason}")
        if status in TRANSIENT or status >= 500:
            record.settle(DeliveryOutcome.TRANSIENT_FAILURE, reason)
            return reason, retry_after_seconds(response.headers.get("retry-after"))
        raise CallbackFailed(f"{self._target}: unexpected {reason}")


class CallbackChannel:
    name = "callback"

    def __init__(self, http: httpx2.AsyncClient, url: str, secret: str, max_attempts: int) -> None:
        self._webhook = SignedWebhook(
            http, url, secret, max_attempts, DeliveryTarget.CALLBACK, "the result"
        )

    async def send(self, result: FeedbackResult) -> DeliveryOutcome:
        return await self._webhook.post(result.webhook_id, result.model_dump_json())


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header in seconds: delay-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
