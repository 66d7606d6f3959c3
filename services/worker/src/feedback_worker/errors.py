"""How a message can fail. The runner turns each kind into one queue action."""

from typing import TYPE_CHECKING

from llm_common.telemetry.names import DeadLetterReason, RetryOperation, SkipReason

if TYPE_CHECKING:
    from feedback_worker.llm_gate import GateReason


class Skip(Exception):
    """Nothing is to be done for this message, nor ever will be: it is deleted now, without an
    LLM call or a delivery, and counted (feedback_worker_skipped_total)."""

    reason: SkipReason


class RequestCancelled(Skip):
    """The backend cancelled the request (DELETE /ai/feedback/{requestId}) before a worker
    asked the LLM: its record says `cancelled`, and nobody may answer it any more."""

    reason = SkipReason.CANCELLED


class RetryLater(Exception):
    """Transient: the message goes back to the queue with a growing delay.

    The queue's redrive policy bounds the attempts: a message that fails on its last allowed
    receive goes to the DLQ with this reason.
    """

    operation: RetryOperation | None = None
    """What failed, for the retry count (feedback_worker_retries_total); None when unexpected."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        """A delay the other side asked for (Retry-After), if any."""


class DeadLetter(Exception):
    """Permanent: retrying cannot help, so the message moves to the DLQ now, with this reason.
    The request's record ends `failed` (`expired` for RequestExpired)."""

    cause = DeadLetterReason.PERMANENT_FAILURE
    """Why, for the DLQ count (feedback_worker_dlq_sends_total)."""


class InvalidMessage(DeadLetter):
    """The body is not JSON or not a FeedbackJob: a poison message."""

    cause = DeadLetterReason.INVALID_MESSAGE


class RequestExpired(DeadLetter):
    """The request's deadline passed before it reached the LLM: the GPU is not spent on it."""

    cause = DeadLetterReason.EXPIRED


class UnfitContent(DeadLetter):
    """Two drafts in a row failed the content checks (content.py)."""

    cause = DeadLetterReason.UNFIT_CONTENT


class DeliveryBudgetSpent(DeadLetter):
    """DELIVERY_RETRY_SECONDS passed since the result was generated, and no channel took it."""

    cause = DeadLetterReason.DELIVERY_BUDGET_SPENT


class LlmUnavailable(RetryLater):
    """The LLM failed (connection, timeout, 429, 5xx, ...), after the client's own retries when
    the LLM gate is off; `gate_reason` says whether the failure closes the gate."""

    operation = RetryOperation.LLM

    def __init__(
        self, reason: str, retry_after: float | None = None, gate_reason: "GateReason | None" = None
    ) -> None:
        super().__init__(reason, retry_after)
        self.gate_reason = gate_reason


class RecordUnavailable(RetryLater):
    """The request store did not answer when the message started (without its record the
    worker cannot tell a stored result, to send, from none, to generate), or not for the whole
    delivery budget while the worker held a result it had to store or mark delivered."""

    operation = RetryOperation.STORE


class DeliveryFailed(RetryLater):
    """A delivery channel could not take the result now (queue down, callback attempts spent).
    Retried within the delivery budget, without going back to the queue."""


class ResultQueueFailed(DeliveryFailed):
    operation = RetryOperation.QUEUE


class CallbackFailed(DeliveryFailed):
    operation = RetryOperation.CALLBACK


class CallbackRejected(DeadLetter):
    """The callback answered 400 or 404: the backend will never accept this result there. It
    fails the request only when no other channel took the result (delivery/budget.py)."""


class ConfigurationError(Exception):
    """The environment cannot work (no DLQ, a standard queue, a model the LLM does not serve);
    found at start-up, reported in one line, and the process exits 2."""
