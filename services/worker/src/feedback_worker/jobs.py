"""A queue message read as a feedback job, with the request id every output carries."""

from dataclasses import dataclass
from datetime import UTC, datetime

from llm_common.contracts import FeedbackJob
from pydantic import ValidationError

from feedback_worker.errors import InvalidMessage, RequestExpired
from feedback_worker.source import QueueMessage

MAX_ERRORS_IN_REASON = 5


@dataclass(frozen=True)
class Job:
    request: FeedbackJob
    request_id: str


def read_job(message: QueueMessage) -> Job:
    """Raise InvalidMessage for a body that is not JSON or not a FeedbackJob."""
    try:
        request = FeedbackJob.model_validate_json(message.body)
    except ValidationError as error:
        raise InvalidMessage(f"not a FeedbackJob: {_summary(error)}") from None
    # The backend's own messages carry no requestId; their deduplication id
    # (`memberId-sha256(body)`) is stable across its retries, the message id is the last resort.
    request_id = request.request_id or message.deduplication_id or message.message_id
    return Job(request=request, request_id=request_id)


def refuse_if_expired(job: Job) -> None:
    """RequestExpired once the job's deadline (zone-less, read as UTC) has passed: weekly
    feedback is worthless a week later, and the GPU goes to requests still worth answering."""
    deadline = job.request.deadline
    if deadline is not None and deadline.replace(tzinfo=UTC) <= datetime.now(UTC):
        raise RequestExpired(f"deadline {deadline.isoformat()} passed before the LLM was asked")


def _summary(error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
        for problem in error.errors(include_url=False)[:MAX_ERRORS_IN_REASON]
    ]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
