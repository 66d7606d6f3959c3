"""What became of a request, as `GET /ai/feedback/{requestId}` (and `admin status`) show it.

Built from the request store's record (llm_common/requests_store.py), which knows nothing of
how an API shows it: camelCase, ISO 8601 times with their offset (`+00:00`), what has not
happened left out, and the content only once delivered (before that a retry may still replace
it).
"""

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel

from llm_common.requests_store import RequestRecord, RequestState

_ENDED = (RequestState.FAILED, RequestState.EXPIRED)
IsoTime = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str)]


class _View(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, frozen=True
    )


class DeliveredResult(_View):
    content: str | None
    channels: list[str]
    """The delivery channels that took the result."""
    missing: list[str]
    """Those that did not: `admin redeliver --channel` sends them the stored result."""
    outcome: str | None


class UsageView(_View):
    """What the LLM spent on the result, over every draft (Usage in the request store)."""

    prompt_tokens: int
    completion_tokens: int
    llm_seconds: float
    """The calls' wall time: a share of the batch each ran in, not GPU time of its own."""


class RequestStatus(_View):
    request_id: str
    member_id: int
    state: RequestState
    deadline: IsoTime
    attempts: int
    times: dict[str, IsoTime]
    """`acceptedAt`, `enqueuedAt`, `processingAt`, `generatingAt`, `generatedAt`,
    `deliveredAt`, `failedAt`, `expiredAt`, `cancelledAt`: those that happened."""
    result: DeliveredResult | None = None
    """Once delivered."""
    failure_reason: str | None = None
    """Once failed or expired."""
    usage: UsageView | None = None
    """Once generated (by a worker that counts it)."""

    @classmethod
    def of(cls, record: RequestRecord) -> Self:
        times = {
            "acceptedAt": record.accepted_at,
            "enqueuedAt": record.enqueued_at,
            "processingAt": record.processing_at,
            "generatingAt": record.generating_at,
            "generatedAt": record.generated_at,
            "deliveredAt": record.delivered_at,
            "failedAt": record.failed_at,
            "expiredAt": record.expired_at,
            "cancelledAt": record.cancelled_at,
        }
        delivered = record.state is RequestState.DELIVERED
        ended = record.state in _ENDED
        return cls(
            request_id=record.request_id,
            member_id=record.member_id,
            state=record.state,
            deadline=record.deadline,
            attempts=record.attempts,
            times={name: at for name, at in times.items() if at is not None},
            result=DeliveredResult(
                content=record.content,
                channels=list(record.channels),
                missing=list(record.missing),
                outcome=record.outcome,
            )
            if delivered
            else None,
            failure_reason=record.failure_reason if ended else None,
            usage=UsageView(**asdict(record.usage)) if record.usage else None,
        )

    def shown(self) -> dict[str, Any]:
        """As JSON, without the fields this state does not have."""
        absent = set()
        if self.result is None:
            absent.add("result")
        if self.state not in _ENDED:
            absent.add("failure_reason")
        if self.usage is None:
            absent.add("usage")
        return self.model_dump(mode="json", exclude=absent)
