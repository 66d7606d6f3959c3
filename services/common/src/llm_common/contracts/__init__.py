"""Wire contracts shared by ingest, worker and the backend (design.md §3)."""

from llm_common.contracts.dates import LocalDateTime
from llm_common.contracts.envelope import Envelope
from llm_common.contracts.feedback import (
    FeedbackJob,
    FeedbackRequest,
    FeedbackResult,
    GroupChallenge,
    PersonalChallenge,
    RequestId,
    Submission,
)

__all__ = [
    "Envelope",
    "FeedbackJob",
    "FeedbackRequest",
    "FeedbackResult",
    "GroupChallenge",
    "LocalDateTime",
    "PersonalChallenge",
    "RequestId",
    "Submission",
]
