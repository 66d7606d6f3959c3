"""Wire contracts shared by ingest, worker and the backend (docs/backend-contract.md)."""

from llm_common.contracts.dates import LocalDateTime
from llm_common.contracts.envelope import Envelope
from llm_common.contracts.feedback import (
    REQUEST_ID_PATTERN,
    RESENT_ATTRIBUTE,
    FailureNotice,
    FeedbackJob,
    FeedbackRequest,
    FeedbackResult,
    GroupChallenge,
    PersonalChallenge,
    RequestId,
    RequestRef,
    Submission,
)

__all__ = [
    "REQUEST_ID_PATTERN",
    "RESENT_ATTRIBUTE",
    "Envelope",
    "FailureNotice",
    "FeedbackJob",
    "FeedbackRequest",
    "FeedbackResult",
    "GroupChallenge",
    "LocalDateTime",
    "PersonalChallenge",
    "RequestId",
    "RequestRef",
    "Submission",
]
