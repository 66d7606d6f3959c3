"""The feedback request, the queue message built from it, and the result sent back."""

import hashlib
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel

from llm_common.contracts.dates import LocalDateTime

RESENT_ATTRIBUTE = "ResentByIngest"
"""SQS message attribute on a message ingest sends again for a request it had accepted already
(its first send's fate unknown): the worker reads the request's record before working it."""

# Strict types throughout: `true`, `"77"` or `77.0` as a member id, `"yes"` or `1` as isSuccess are
# refused (400), never coerced into another member or another outcome.

REQUEST_ID_MAX_LENGTH = 128
"""SQS's limit on a MessageDeduplicationId, which every request id is used as."""
REQUEST_ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._~-]{{0,{REQUEST_ID_MAX_LENGTH - 1}}}$"
"""The whole rule in one pattern, as /openapi.json shows it: RFC 3986's unreserved characters,
the first a letter or digit, at most 128."""

RequestId = Annotated[
    str,
    Field(strict=True),
    StringConstraints(min_length=1, max_length=REQUEST_ID_MAX_LENGTH, pattern=REQUEST_ID_PATTERN),
]
"""A request id the ingest accepts (`requestId` or `Idempotency-Key`).

Every accepted id must come back through `GET /ai/feedback/{requestId}`, and through the
worker's `admin` commands and the callback's `webhook-id`. Unreserved characters mean the same
in a URL path whether a client percent-encodes them or not; anything else may not survive the
trip (`/` splits the path even as `%2F`, `?` and `#` end it, `%` is read as an escape). The first
character rules out `.` and `..`, which URL clients drop as dot segments, and ids read as
command-line options.
"""

QueuedRequestId = Annotated[
    str,
    Field(strict=True),
    StringConstraints(pattern=rf"^[\x21-\x7e]{{1,{REQUEST_ID_MAX_LENGTH}}}$"),
]
"""A request id as the worker may meet it: SQS's own rule for a MessageDeduplicationId (1 to 128
printable ASCII characters). Wider than `RequestId`: the backend's direct publishes take their
dedup id as request id, and a message queued before `RequestId` was narrowed must still be
worked, never refused as invalid."""

# Limits well above any real week, so that an abusive body is refused before it reaches the LLM.
MAX_CHALLENGES = 200
MAX_SUBMISSIONS = 1_000
MAX_TITLE_LENGTH = 500
# The backend's ids are Java longs; a larger number would also be refused by SQS as a group id.
JAVA_LONG_MAX = 2**63 - 1

Title = Annotated[str, Field(strict=True), StringConstraints(max_length=MAX_TITLE_LENGTH)]


class _Contract(BaseModel):
    """camelCase on the wire (the backend is Java), snake_case in Python; unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, frozen=True
    )


class Submission(_Contract):
    is_success: StrictBool
    submitted_at: LocalDateTime


class PersonalChallenge(_Contract):
    id: StrictInt | None = None
    title: Title | None = None
    is_success: StrictBool


class GroupChallenge(_Contract):
    id: StrictInt | None = None
    title: Title | None = None
    start_date: LocalDateTime | None = None
    end_date: LocalDateTime | None = None
    submissions: list[Submission] = Field(default_factory=list, max_length=MAX_SUBMISSIONS)

    @property
    def succeeded(self) -> int:
        return sum(1 for s in self.submissions if s.is_success)


class FeedbackRequest(_Contract):
    """What the backend POSTs to `/ai/feedback`."""

    member_id: StrictInt = Field(gt=0, le=JAVA_LONG_MAX)
    personal_challenges: list[PersonalChallenge] = Field(max_length=MAX_CHALLENGES)
    group_challenges: list[GroupChallenge] = Field(max_length=MAX_CHALLENGES)
    request_id: RequestId | None = None
    deadline: LocalDateTime | None = None
    """When the feedback stops being worth generating; ingest sets one from REQUEST_TTL_SECONDS
    when absent. Zone-less like every backend date, read as UTC."""

    @model_validator(mode="after")
    def _has_something_to_say(self) -> "FeedbackRequest":
        if not self.personal_challenges and not self.group_challenges:
            raise ValueError(
                "personalChallenges and groupChallenges are both empty: nothing to give feedback on"
            )
        return self


class FeedbackJob(FeedbackRequest):
    """The request message on the feedback queue.

    Ingest always writes `schemaVersion`, `requestId` and `acceptedAt`. The backend may also
    publish a bare `FeedbackRequest` straight to the queue: the same model reads it, and the
    worker then takes the SQS message id as the request id.
    """

    request_id: QueuedRequestId | None = None
    schema_version: Literal[1] = 1
    accepted_at: datetime | None = None


class RequestRef(_Contract):
    """The data of ingest's answers about one request: accepted (202), another member's id
    (409), unknown (404)."""

    request_id: str


class FeedbackResult(_Contract):
    """The result message on the result queue, and the callback body."""

    member_id: int
    content: str = Field(min_length=1)
    status: Literal["success"] = "success"
    timestamp: LocalDateTime
    request_id: QueuedRequestId

    @property
    def webhook_id(self) -> str:
        """The callback's `webhook-id`: the request id, the backend's idempotency key for
        results (a result sent again is answered 409 and counts as delivered)."""
        return self.request_id


class FailureNotice(_Contract):
    """The failure callback's body (CALLBACK_FAILURE_PATH, off by default): a request ended
    without a result. Never sent to the result queue or CALLBACK_PATH, whose consumer needs
    `content`."""

    request_id: QueuedRequestId
    member_id: int
    state: Literal["failed", "expired"]
    reason: str
    timestamp: LocalDateTime

    @property
    def webhook_id(self) -> str:
        """The notice's own `webhook-id`, never the request id: a backend keeps one idempotency
        store by webhook-id (Standard Webhooks: one id per message), so a notice under the
        request id would make it answer 409 to the result sent later (`admin redeliver`), and
        the member would never get the feedback. Derived from the request id and the state, so
        the same notice sent again keeps its id; 39 characters, within a request id's 128."""
        digest = hashlib.sha256(f"{self.state}:{self.request_id}".encode()).hexdigest()
        return "notice_" + digest[:32]
