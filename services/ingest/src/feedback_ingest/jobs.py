"""From an accepted request to the job on the queue: which request id, and the message itself."""

import hashlib
from datetime import UTC, datetime, timedelta

from llm_common.contracts import FeedbackJob, FeedbackRequest, RequestId
from pydantic import TypeAdapter, ValidationError

from feedback_ingest.errors import InvalidRequest

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
_REQUEST_ID = TypeAdapter(RequestId)


def resolve_request_id(request: FeedbackRequest, idempotency_key: str | None) -> str:
    """The body's `requestId`, else the `Idempotency-Key` header, else one derived from the
    content. Never random: the request id is SQS's deduplication id, and a retry must carry the
    same one to be dropped."""
    if idempotency_key is None:
        return request.request_id or derived_request_id(request)
    header_id = _valid_idempotency_key(idempotency_key)
    if request.request_id is not None and request.request_id != header_id:
        raise InvalidRequest.about(
            "requestId",
            f"differs from the {IDEMPOTENCY_KEY_HEADER} header; send one or make them equal",
        )
    return header_id


def derived_request_id(request: FeedbackRequest) -> str:
    """`{memberId}-{sha256 of the normalised request}`: the same week sent twice, in either date
    shape, gets the same id."""
    digest = hashlib.sha256(request.model_dump_json().encode()).hexdigest()[:32]
    return f"{request.member_id}-{digest}"


def _valid_idempotency_key(value: str) -> str:
    """The header under the body's `requestId` rule: it becomes the request id just the same."""
    try:
        return _REQUEST_ID.validate_python(value)
    except ValidationError as error:
        raise InvalidRequest.about(
            IDEMPOTENCY_KEY_HEADER, error.errors(include_url=False)[0]["msg"]
        ) from None


def feedback_job(request: FeedbackRequest, request_id: str, ttl_seconds: int) -> FeedbackJob:
    accepted_at = datetime.now(UTC)
    # Zone-less like every backend date; read as UTC.
    deadline = request.deadline or (accepted_at + timedelta(seconds=ttl_seconds)).replace(
        tzinfo=None
    )
    # dict(request) keeps the nested models as they are: validated once, not twice.
    return FeedbackJob.model_validate(
        {
            **dict(request),
            "request_id": request_id,
            "accepted_at": accepted_at,
            "deadline": deadline,
        }
    )
