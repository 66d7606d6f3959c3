"""The signed HTTP callback to the backend (Standard Webhooks; docs/backend-contract.md, Callback).

2xx is delivered and so is 409 (the backend already has this week's feedback). 400 and 404 are
permanent. 408, 429, 5xx, timeouts and connection errors are retried here with exponential
backoff and jitter, honouring Retry-After, up to CALLBACK_MAX_ATTEMPTS; any other answer (401
from a wrong secret, say) is a configuration problem: the message is retried later instead.
"""

import asyncio
import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
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
# A longer wait than this holds a worker slot for nothing: the message goes back to the queue
# with the wait the backend asked for instead.
MAX_WAIT_SECONDS = 30.0
MAX_BODY_IN_REASON = 200


class CallbackChannel:
    name = "callback"

    def __init__(self, http: httpx.AsyncClient, url: str, secret: str, max_attempts: int) -> None:
        self._http = http
        self._url = url
        self._secret = secret
        self._max_attempts = max_attempts

    async def send(self, result: FeedbackResult) -> None:
        body = result.model_dump_json()
        problem, wait = "no attempt", None
        for attempt in range(1, self._max_attempts + 1):
            with delivery_attempt(DeliveryTarget.CALLBACK, attempt) as record:
                problem, wait = await self._attempt(result.request_id, body, record)
            if not problem:
                return
            delay = (
                wait
                if wait is not None
                else backoff_delay(attempt, BACKOFF_BASE_SECONDS, MAX_WAIT_SECONDS)
            )
            if attempt == self._max_attempts or delay > MAX_WAIT_SECONDS:
                break
            log.info(
                "callback for %s: %s; attempt %d/%d in %.1fs",
                result.request_id,
                problem,
                attempt + 1,
                self._max_attempts,
                delay,
            )
            metrics.WORKER_RETRIES.labels(RetryOperation.CALLBACK).inc()
            await asyncio.sleep(delay)
        raise CallbackFailed(f"callback: {problem} (after {attempt} attempt(s))", retry_after=wait)

    async def _attempt(
        self, request_id: str, body: str, record: DeliveryAttempt
    ) -> tuple[str, float | None]:
        """("", None) when delivered, else what went wrong and the wait the backend asked for."""
        headers = {
            "content-type": "application/json",
            # Signed per attempt: the timestamp must be fresh for the receiver's tolerance window.
            **signature_headers(self._secret, request_id, body),
        }
        try:
            response = await self._http.post(self._url, content=body.encode(), headers=headers)
        except httpx.TransportError as error:  # timeouts and connection errors
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
            raise CallbackRejected(f"callback rejected the result: {reason}")
        if status in TRANSIENT or status >= 500:
            record.settle(DeliveryOutcome.TRANSIENT_FAILURE, reason)
            return reason, retry_after_seconds(response.headers.get("retry-after"))
        raise CallbackFailed(f"callback: unexpected {reason}")


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
