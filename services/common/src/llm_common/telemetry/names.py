"""The names the services give their spans, span attributes and metric labels, in one place.

docs/observability.md lists them; dashboards and alerts depend on them: change them here.
"""

from enum import StrEnum

# Span names. The HTTP server and client spans, the SQS calls and the LLM span ("chat {model}")
# are named by their instrumentations and by the GenAI semantic conventions (genai.py).
ENQUEUE_SPAN = "feedback.enqueue"
QUEUE_WAIT_SPAN = "feedback.queue_wait"
PROCESS_SPAN = "feedback.process"
DELIVERY_SPAN = "feedback.deliver"
QA_SYNC_JOB_SPAN = "qa_sync.job"
QA_SYNC_VERIFY_SPAN = "qa_sync.verify"
QA_SYNC_REPAIR_SPAN = "qa_sync.repair"

# Span attributes of our own (the standard ones come from the semantic conventions).
REQUEST_ID_ATTRIBUTE = "feedback.request_id"
MEMBER_ID_ATTRIBUTE = "feedback.member_id"
DELIVERY_TARGET_ATTRIBUTE = "feedback.delivery.target"
DELIVERY_OUTCOME_ATTRIBUTE = "feedback.delivery.outcome"
DELIVERY_ATTEMPT_ATTRIBUTE = "feedback.delivery.attempt"
RECEIVE_COUNT_ATTRIBUTE = "feedback.sqs.approximate_receive_count"
QA_TASK_ID_ATTRIBUTE = "qa_sync.task_id"
QA_BATCH_ID_ATTRIBUTE = "qa_sync.batch_id"


class RejectReason(StrEnum):
    """Why ingest refused a request (label `reason`)."""

    INVALID_BODY = "invalid_body"  # 400
    UNAUTHORIZED = "unauthorized"  # 401
    API_CLOSED = "api_closed"  # 503: INGEST_API_KEYS is not set
    TOO_LARGE = "too_large"  # 413
    QUEUE_UNAVAILABLE = "queue_unavailable"  # 503
    STORE_UNAVAILABLE = "store_unavailable"  # 503
    REQUEST_ID_TAKEN = "request_id_taken"  # 409


class DeliveryTarget(StrEnum):
    QUEUE = "queue"
    CALLBACK = "callback"
    FAILURE_NOTICE = "failure_notice"  # the optional callback to CALLBACK_FAILURE_PATH


class DeliveryOutcome(StrEnum):
    """How one delivery attempt ended (span attribute and label `outcome`)."""

    DELIVERED = "delivered"
    DUPLICATE = "duplicate"  # the backend already had it (409): counts as delivered
    PERMANENT_FAILURE = "permanent_failure"  # 400/404: retrying cannot help
    TRANSIENT_FAILURE = "transient_failure"  # 408/429/5xx/timeout: retried


class Outcome(StrEnum):
    """Whether a timed call (enqueue, LLM request) succeeded (label `outcome` on durations)."""

    OK = "ok"
    ERROR = "error"


class AttemptOutcome(StrEnum):
    """How one HTTP attempt at the LLM ended (label `outcome`): the openai client's own retries
    are attempts too, so a timeout it retried is counted."""

    ANSWERED = "answered"  # any status: the server answered within the deadline
    TIMED_OUT = "timed_out"  # LLM_TIMEOUT_SECONDS passed: the client gave up, vLLM aborts it
    FAILED = "failed"  # no answer: connection refused or closed


class TokenType(StrEnum):
    """Label `type` on token counts, as in the GenAI semantic conventions (gen_ai.token.type)."""

    INPUT = "input"
    OUTPUT = "output"


class RetryOperation(StrEnum):
    LLM = "llm"
    QUEUE = "queue"
    CALLBACK = "callback"
    STORE = "store"  # the request store did not answer when the message started


class DeadLetterReason(StrEnum):
    """Why the worker sent a message to the DLQ itself (SQS's own redrive is not seen)."""

    INVALID_MESSAGE = "invalid_message"  # cannot be parsed: no retry can help
    PERMANENT_FAILURE = "permanent_failure"  # the backend refused the result for good
    RETRIES_EXHAUSTED = "retries_exhausted"  # the last allowed receive failed too
    EXPIRED = "expired"  # its deadline passed before it reached the LLM
    UNFIT_CONTENT = "unfit_content"  # two drafts failed the content checks
    DELIVERY_BUDGET_SPENT = "delivery_budget_spent"  # DELIVERY_RETRY_SECONDS passed undelivered


class SkipReason(StrEnum):
    """Why the worker deleted a message without working it (label `reason`)."""

    CANCELLED = "cancelled"  # the backend cancelled the request before it reached the LLM


class ContentCheck(StrEnum):
    """The checks a feedback passes before delivery (label `check`; worker's content.py)."""

    ALL = "all"  # with outcome `passed`: every check passed
    EMPTY = "empty"  # nothing left once zero-width characters and <think> text are removed
    ECHO = "echo"  # the prompt's own instructions handed back (a base model, a wrong template)
    RECORD_ECHO = "record_echo"  # the member's record handed back (its 기간/성공률 lines)
    INCOMPLETE = "incomplete"  # cut by max_tokens: trimmed to its last complete sentence
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    LINK = "link"
    EMAIL = "email"
    PHONE = "phone"
    NOT_KOREAN = "not_korean"


class ContentOutcome(StrEnum):
    """What a check did to one draft (label `outcome`)."""

    PASSED = "passed"
    TRIMMED = "trimmed"  # cut mid-sentence, delivered up to its last complete sentence
    REGENERATED = "regenerated"  # the first draft failed this check: asked once more
    FAILED = "failed"  # the second draft failed it too: the request fails with the reason


class DrainOutcome(StrEnum):
    COMPLETED = "completed"  # every in-flight message finished before the deadline
    TIMED_OUT = "timed_out"  # some were left for SQS to redeliver


class QueueRole(StrEnum):
    """Which of the platform's queues a depth is about (label `queue`): a role, not a name, so
    alerts hold whatever the queues are called."""

    REQUESTS = "requests"
    DEAD_LETTER = "dead_letter"


class QueueMessageState(StrEnum):
    """Label `state` on queue depths: SQS's ApproximateNumberOfMessages{,NotVisible,Delayed}."""

    VISIBLE = "visible"
    IN_FLIGHT = "in_flight"
    DELAYED = "delayed"
