"""The worker's side of the request store (llm_common/requests_store.py), and failure notices.

The handler calls it at four points of a message's work, one conditional write each:

1. `start`, before the message waits for an LLM slot: `processing`, one more attempt. Its answer
   carries what an earlier receive left: a stored result (sent again; the LLM is not asked) or
   a delivered request (a second copy of its message: nothing to do).
2. `generated`, once the LLM has answered: the result, stored before its first delivery attempt,
   so a delivery that a crash interrupts sends the same text again.
3. `delivered`, before the message is deleted.
4. or `ended`, when the runner gives the message up: `failed` or `expired` with the reason, and
   the failure notice when CALLBACK_FAILURE_PATH is set.

The writes hold no LLM slot. A store outage at 1 sends the message back to the queue (without the
record the worker cannot tell a stored result from none); at 2-4 it is logged and the work goes
on: the delivery happens either way, and a message that comes back records it again.
"""

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import anyio.to_thread
from llm_common.contracts import FailureNotice
from llm_common.requests_store import (
    RequestRecord,
    RequestState,
    RequestStore,
    StateConflict,
)
from llm_common.requests_store import StoreUnavailable as StoreDown

from feedback_worker.delivery.notices import FailureNotices
from feedback_worker.errors import StoreUnavailable
from feedback_worker.jobs import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """What the record says as a message starts; all defaults for a request without a record
    (no store, or a message the backend published itself)."""

    delivered: bool = False
    content: str | None = None
    """A result an earlier receive generated and stored: delivered as it is."""
    generated_at: datetime | None = None


class RequestRecords:
    def __init__(self, store: RequestStore | None, notices: FailureNotices | None = None) -> None:
        self._store = store
        self._notices = notices

    async def start(self, job: Job) -> Progress:
        if self._store is None:
            return Progress()
        try:
            record: RequestRecord | None = await anyio.to_thread.run_sync(
                self._store.start_processing, job.request_id
            )
        except StateConflict as conflict:
            record = conflict.current
        except StoreDown as error:
            raise StoreUnavailable(f"request store unavailable: {error}") from error
        if record is None:
            return Progress()
        return Progress(
            delivered=record.state is RequestState.DELIVERED,
            content=record.content,
            generated_at=record.generated_at,
        )

    async def generated(self, job: Job, content: str) -> None:
        if self._store is not None:
            await self._quietly(
                "generated", functools.partial(self._store.store_result, job.request_id, content)
            )

    async def delivered(self, job: Job, channels: list[str], outcome: str) -> None:
        if self._store is not None:
            mark = functools.partial(self._store.mark_delivered, job.request_id, channels, outcome)
            await self._quietly("delivered", mark)

    async def ended(self, job: Job, state: RequestState, reason: str) -> None:
        """`failed` or `expired`; the notice goes out whether or not the record could be kept."""
        if self._store is not None:
            end = functools.partial(self._store.end, job.request_id, state, reason)
            await self._quietly(state.value, end)
        if self._notices is not None:
            notice = {
                "request_id": job.request_id,
                "member_id": job.request.member_id,
                "state": state.value,
                "reason": reason,
                # Zone-less like the result's: the worker's local time (set TZ).
                "timestamp": datetime.now(),
            }
            await self._notices.send(FailureNotice.model_validate(notice))

    @staticmethod
    async def _quietly(what: str, write: Callable[[], object]) -> None:
        try:
            await anyio.to_thread.run_sync(write)
        except (StoreDown, StateConflict) as error:
            log.warning("request record not marked %s: %s", what, error)
