"""The feedback queue as ingest uses it: send one job, and say whether the queue answers.

`FeedbackQueue._send` is the one place a message is built, so trace context (OpenTelemetry,
carried in MessageAttributes) is added there and nowhere else.
"""

import functools
import logging
import re
import time
from typing import TYPE_CHECKING

import anyio.to_thread
from anyio import CapacityLimiter
from botocore.exceptions import BotoCoreError, ClientError
from llm_common.aws import aws_client
from llm_common.contracts import RESENT_ATTRIBUTE, FeedbackJob
from llm_common.telemetry import inject_trace_context, messaging, metrics, names
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

SQS_MAX_MESSAGE_BYTES = 262_144
"""SQS's message size limit (body and attributes; this counts the body, which is nearly all)."""

# SQS refuses a body with characters outside these ranges (InvalidMessageContents). JSON escapes
# control characters already; what is left (U+FFFE, U+FFFF) is legal in a title, so it is
# written as a JSON escape: the consumer reads back the very same string.
_NOT_ALLOWED_BY_SQS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


REFUSAL_HOLD_SECONDS = 60.0
"""How long /readyz reports a permanent SendMessage refusal; then the next request tries again
(a pod that is not ready gets no request that could show the refusal lifted)."""
PERMANENT_REFUSALS = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "KMS.AccessDeniedException",
        "KMS.DisabledException",
        "KMS.NotFoundException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
    }
)
"""SendMessage answers that no retry mends: the role, the key or the queue must be fixed."""


class QueueUnavailable(Exception):
    """SQS did not take the message (outage, timeout, throttling, permissions): retry later."""


class MessageTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(
            f"the normalised request is {size} bytes, over the queue's limit of "
            f"{SQS_MAX_MESSAGE_BYTES}"
        )
        self.max_bytes = SQS_MAX_MESSAGE_BYTES


def sqs_safe_json(text: str) -> str:
    return _NOT_ALLOWED_BY_SQS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


class FeedbackQueue:
    """boto3 blocks, so every call runs in a worker thread; `concurrency` bounds those threads
    and sizes the client's connection pool to match."""

    def __init__(self, queue_url: str, region: str, concurrency: int) -> None:
        self.queue_url = queue_url
        # The backend is waiting on the answer: fail over to a 503 in seconds, not minutes.
        self._sqs: SQSClient = aws_client(
            "sqs", region, max_pool_connections=concurrency, read_timeout=5, max_attempts=2
        )
        self._threads = CapacityLimiter(concurrency)
        self._refused: tuple[str, float] | None = None
        """The last permanent SendMessage refusal and when (monotonic), until a send succeeds."""

    async def enqueue(self, job: FeedbackJob, resent: bool = False) -> str:
        """Put `job` on the queue; return the SQS message id once SQS has accepted it. `resent`
        marks a second send for one request (llm_common.contracts.RESENT_ATTRIBUTE)."""
        if job.request_id is None:
            raise ValueError("a job needs its request id: it is the deduplication id")
        body = sqs_safe_json(job.model_dump_json())
        size = len(body.encode())
        if size > SQS_MAX_MESSAGE_BYTES:
            raise MessageTooLarge(size)
        send = functools.partial(self._send, body, job.member_id, job.request_id, resent)
        return await anyio.to_thread.run_sync(send, limiter=self._threads)

    async def is_reachable(self) -> bool:
        return await anyio.to_thread.run_sync(self._answers, limiter=self._threads)

    def refusal(self) -> str | None:
        """The error code of a permanent SendMessage refusal in the last REFUSAL_HOLD_SECONDS:
        GetQueueAttributes may still answer for a role that cannot send."""
        if self._refused is None:
            return None
        code, at = self._refused
        return code if time.monotonic() - at < REFUSAL_HOLD_SECONDS else None

    def close(self) -> None:
        self._sqs.close()

    def _send(self, body: str, member_id: int, request_id: str, resent: bool) -> str:
        # Group per member: ordered per member, parallel across members. Dedup on the request
        # id: SQS drops a retry of the same request within its 5-minute window.
        attributes: dict[str, AttributeValue] = {
            names.REQUEST_ID_ATTRIBUTE: request_id,
            names.MEMBER_ID_ATTRIBUTE: member_id,
            # The PRODUCER span of the hop, as APM queue views look for it.
            **messaging.messaging_attributes(messaging.SEND, self.queue_url),
        }
        # Runs on anyio's worker thread, which carries the request's context: the span is a child
        # of the HTTP request's.
        with tracer.start_as_current_span(
            names.ENQUEUE_SPAN, kind=SpanKind.PRODUCER, attributes=attributes
        ):
            started = time.perf_counter()
            try:
                response = self._sqs.send_message(
                    QueueUrl=self.queue_url,
                    MessageBody=body,
                    MessageGroupId=str(member_id),
                    MessageDeduplicationId=request_id,
                    # The worker continues this trace from here (docs/observability.md, Traces).
                    MessageAttributes={**inject_trace_context(), **_resent(resent)},
                )
            except (BotoCoreError, ClientError) as error:
                _observe_enqueue(names.Outcome.ERROR, started)
                self._note_refusal(error)
                raise QueueUnavailable(str(error)) from error
            _observe_enqueue(names.Outcome.OK, started)
            self._refused = None
            return response["MessageId"]

    def _note_refusal(self, error: BotoCoreError | ClientError) -> None:
        if not isinstance(error, ClientError):
            return
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        # 403 is an authorization refusal whatever the code says (emulators differ in it).
        if code in PERMANENT_REFUSALS or status == 403:
            refusal = code if code in PERMANENT_REFUSALS else f"HTTP {status}"
            logger.error("SQS refuses SendMessage (%s): not ready until it is fixed", refusal)
            self._refused = (refusal, time.monotonic())

    def _answers(self) -> bool:
        try:
            self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        except (BotoCoreError, ClientError) as error:
            logger.warning("feedback queue unreachable: %s", error)
            return False
        return True


def _resent(resent: bool) -> "dict[str, MessageAttributeValueTypeDef]":
    return {RESENT_ATTRIBUTE: {"DataType": "String", "StringValue": "1"}} if resent else {}


def _observe_enqueue(outcome: names.Outcome, started: float) -> None:
    metrics.INGEST_ENQUEUE_DURATION.labels(outcome).observe(time.perf_counter() - started)
