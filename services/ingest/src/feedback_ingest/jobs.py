"""From an accepted request to the job on the queue: which request id, and the message itself."""

import hashlib
from datetime import UTC, datetime, timedelta

from llm_common.contracts import FeedbackJob, FeedbackRequest, RequestId
from pydantic import TypeAdapter, ValidationError

from feedback_ingest.errors import InvalidRequest

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
_REQUEST_ID = TypeAdapter(RequestId)


def resolve_request_id(
    request: FeedbackRequest, idempotency_key: str | None, remembered: bool
) -> str:
    """The body's `requestId`, else the `Idempotency-Key` header, else one derived from the
    content. Never random: the request id is SQS's deduplication id, and a retry must carry the
    same one to be dropped. `remembered`: the request store keeps which member used an id."""
    given = _given_request_id(request, idempotency_key)
    if given is None:
        return derived_request_id(request)
    request_id, field = given
    if not remembered:
        _refuse_unless_member_scoped(request_id, field, request.member_id)
    return request_id


def _given_request_id(
    request: FeedbackRequest, idempotency_key: str | None
) -> tuple[str, str] | None:
    """The id the client chose, and the field it came in; None when it chose none."""
    if idempotency_key is None:
        return None if request.request_id is None else (request.request_id, "requestId")
    header_id = _valid_idempotency_key(idempotency_key)
    if request.request_id is not None and request.request_id != header_id:
        raise InvalidRequest.about(
            "requestId",
            f"differs from the {IDEMPOTENCY_KEY_HEADER} header; send one or make them equal",
        )
    return header_id, IDEMPOTENCY_KEY_HEADER


def _refuse_unless_member_scoped(request_id: str, field: str, member_id: int) -> None:
    """Without the request store nothing remembers which member used an id, and two members'
    requests under one id would share SQS's deduplication id: the second would be answered 202
    and dropped. Only an id that begins with `{memberId}-` (as derived ids do) cannot be another
    member's, so only such an id is taken; the others are refused, loudly, before anything is
    queued."""
    if not request_id.startswith(f"{member_id}-"):
        raise InvalidRequest.about(
            field,
            f'must begin with "{member_id}-" while the request store is off '
            "(REQUEST_TABLE_NAME): nothing remembers which member used an id",
        )


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
