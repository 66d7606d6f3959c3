"""The worker's side of the request store (llm_common/requests_store.py), and failure notices.

The handler calls it at clear points of a message's work, each one conditional write:

1. `start`, only for a message that may have been worked before (received again, re-sent by
   ingest, brought back from the DLQ): `processing`, and what the earlier work left: a stored
   result (sent again; the LLM is not asked), a partial delivery (the missing channels get it),
   or a delivered request (nothing to do). A message's first receive has nothing to learn there
   and skips it.
2. `generating`, right before each receive's first LLM call, once the message holds an LLM
   slot: the point of no return for a cancel (DELETE /ai/feedback/{requestId}), which races
   this write on the record's state. A cancel that came first makes the worker delete the
   message without the call (RequestCancelled); one that comes later is refused. A store that
   does not answer does not hold the call: `generated` refuses a cancelled request's result
   anyway, so a cancel costs at most that one call, never a delivery.
3. `generated`, once the LLM has answered: `processing` with the result, stored before its first
   delivery attempt, so a delivery that a crash interrupts sends the same text again. Refused
   when a result is stored already (a copy raced this one): that result is sent instead.
4. `partly_delivered` as soon as one channel took the result while another is still retried,
   and `delivered` once the delivery ends, before the message is deleted;
5. or `ended`, when the runner gives the message up: `failed` or `expired` with the reason, and
   the failure notice when CALLBACK_FAILURE_PATH is set (none for a cancelled request).

Only 2 holds an LLM slot, for one write: asking before the slot would refuse a cancel while
the message still waits for the LLM. A store outage at 1 sends the message back to the queue
(without the record the worker cannot tell a stored result from none). At 3 and 4 the worker
holds the message instead (the heartbeat keeps it hidden) and writes again with backoff, within
the delivery budget: a text the store does not hold is never delivered (the record and what the
backend got could then disagree for good), and a message is never deleted before its record
says `delivered`. A DynamoDB blip thus delays a delivery by the blip; only a store down for the
whole budget hands the message back (RecordUnavailable), and a later receive finds the record as
it is: no stored result, so the undelivered text is generated again; or a stored result, sent
again under the same webhook-id. `partly_delivered` and `ended` are tried once: the final
`delivered` write follows the first, and the notice goes out whatever the second does.
"""

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from llm_common.contracts import RESENT_ATTRIBUTE, FailureNotice
from llm_common.requests_store import (
    RequestRecord,
    RequestState,
    RequestStore,
    StateConflict,
    StoreUnavailable,
    Usage,
)
from llm_common.telemetry import metrics
from llm_common.telemetry.names import RetryOperation

from feedback_worker.aws_calls import AwsCalls
from feedback_worker.delivery.budget import DeliveryBudget, DeliveryReport
from feedback_worker.delivery.notices import FailureNotices
from feedback_worker.errors import RecordUnavailable, RequestCancelled
from feedback_worker.jobs import Job
from feedback_worker.source import QueueMessage
from feedback_worker.sqs import EARLIER_RECEIVES_ATTRIBUTE, REASON_ATTRIBUTE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """What the record says about a request; the defaults for one without a record (no store,
    a message the backend published itself) or not yet worked."""

    finished: bool = False
    """Delivered to every channel, or expired: a copy of its message has nothing left to do."""
    content: str | None = None
    """A result an earlier receive stored: delivered as it is."""
    generated_at: datetime | None = None
    taken: tuple[str, ...] = ()
    """The channels that took the stored result already (a partial delivery): not sent again."""

    @staticmethod
    def of(record: RequestRecord | None) -> "Progress":
        if record is None:
            return Progress()
        delivered = record.state is RequestState.DELIVERED
        return Progress(
            finished=record.state is RequestState.EXPIRED or (delivered and not record.missing),
            content=record.content,
            generated_at=record.generated_at,
            taken=record.channels if delivered else (),
        )


def first_sight(message: QueueMessage) -> bool:
    """No worker can have worked this request yet: the message's first receive, neither re-sent
    by ingest, nor by a worker sparing its last receive, nor brought back from the DLQ (whose
    reason attribute it keeps)."""
    seen = {RESENT_ATTRIBUTE, EARLIER_RECEIVES_ATTRIBUTE, REASON_ATTRIBUTE}
    seen &= message.attributes.keys()
    return message.receive_count == 1 and not seen


class RequestRecords:
    def __init__(
        self,
        store: RequestStore | None,
        calls: AwsCalls,
        budget: DeliveryBudget,
        notices: FailureNotices | None = None,
    ) -> None:
        """`calls`: the worker's AWS threads, which the store's writes run on; `budget`: the
        delivery budget, within which the writes about a result are held."""
        self._store = store
        self._calls = calls
        self._budget = budget
        self._notices = notices

    async def start(self, job: Job, message: QueueMessage) -> Progress:
        if self._store is None or first_sight(message):
            return Progress()
        start = functools.partial(self._store.start_processing, job.request_id, message.receives)
        try:
            record: RequestRecord | None = await self._calls.run(start)
        except StateConflict as conflict:
            record = conflict.current
        except StoreUnavailable as error:
            raise RecordUnavailable(f"request store unavailable: {error}") from error
        _unless_cancelled(record)
        return Progress.of(record)

    async def generating(self, job: Job, receive: int) -> None:
        """`generating`, just before the LLM call. Raises RequestCancelled when the backend
        cancelled the request first; otherwise the call goes ahead, also where the record
        refused the write for another reason (no record: a message the backend published
        itself; a result a copy stored: `generated` delivers that one instead)."""
        if self._store is None:
            return
        mark = functools.partial(self._store.start_generating, job.request_id, receive)
        try:
            await self._calls.run(mark)
        except StateConflict as conflict:
            _unless_cancelled(conflict.current)
        except StoreUnavailable as error:
            log.warning("request %s: not marked generating (%s)", job.request_id, error)

    async def generated(self, job: Job, content: str, receive: int, usage: Usage) -> Progress:
        """The result to deliver: `content`, now stored; or the one stored before it (a copy of
        the message raced this one); finished when the request ended meanwhile. Raises
        RecordUnavailable when the store did not take it within the delivery budget."""
        generated_at = self._budget.now()
        fresh = Progress(content=content, generated_at=generated_at)
        if self._store is None:
            return fresh
        store = functools.partial(
            self._store.store_result, job.request_id, content, receive, generated_at, usage
        )
        try:
            record = await self._held(job, "stored", store, self._budget.deadline(generated_at))
        except StateConflict as conflict:
            if conflict.current is None:  # no record: a message the backend published itself
                return fresh
            _unless_cancelled(conflict.current)  # while the store did not answer `generating`
            log.warning("request %s: %s before this result", job.request_id, conflict)
            earlier = Progress.of(conflict.current)
            return earlier if earlier.finished or earlier.content else fresh
        return Progress.of(record)

    async def partly_delivered(self, job: Job, report: DeliveryReport) -> None:
        """`delivered` while a channel is still retried: the backend has the result now."""
        if self._store is not None:
            await self._quietly("delivered", self._mark_delivered(self._store, job, report))

    async def delivered(self, job: Job, report: DeliveryReport, deadline: datetime) -> None:
        """`delivered`, before the message is deleted. Raises RecordUnavailable when the store
        did not take it by `deadline`: the message then comes back, and its stored result is
        sent again (the backend answers 409) and recorded."""
        if self._store is None:
            return
        try:
            mark = self._mark_delivered(self._store, job, report)
            await self._held(job, "marked delivered", mark, deadline)
        except StateConflict as conflict:
            if conflict.current is not None:  # None: a message the backend published itself
                log.warning("request record not marked delivered: %s", conflict)

    @staticmethod
    def _mark_delivered(
        store: RequestStore, job: Job, report: DeliveryReport
    ) -> Callable[[], RequestRecord]:
        return functools.partial(
            store.mark_delivered,
            job.request_id,
            report.taken,
            report.outcome.value,
            report.missing,
        )

    async def _held(
        self, job: Job, what: str, write: Callable[[], RequestRecord], deadline: datetime
    ) -> RequestRecord:
        """`write`, made again with backoff while the store does not answer, until `deadline`:
        the message is held meanwhile. RecordUnavailable once the deadline has passed."""
        round_ = 0
        while True:
            round_ += 1
            try:
                return await self._calls.run(write)
            except StoreUnavailable as error:
                delay = self._budget.delay(round_, deadline)
                if delay is None:
                    raise RecordUnavailable(
                        f"request store unavailable: result not {what}"
                    ) from error
                metrics.WORKER_RETRIES.labels(RetryOperation.STORE).inc()
                log.warning(
                    "request %s: result not %s yet (%s); next write in %.1fs",
                    job.request_id,
                    what,
                    error,
                    delay,
                )
                await self._budget.sleep(delay)

    async def ended(self, job: Job, state: RequestState, reason: str) -> None:
        """`failed` or `expired`; the notice goes out whether or not the record could be kept,
        unless the record says the backend cancelled the request (its message can still
        expire: the deadline is checked before the LLM slot that `generating` waits for)."""
        if self._store is not None:
            end = functools.partial(self._store.end, job.request_id, state, reason)
            refused_by = await self._quietly(state.value, end)
            if refused_by is not None and refused_by.state is RequestState.CANCELLED:
                return
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

    async def _quietly(self, what: str, write: Callable[[], object]) -> RequestRecord | None:
        """`write` tried once; the record that refused it, if one did."""
        try:
            await self._calls.run(write)
        except StateConflict as conflict:
            if conflict.current is not None:  # None: a message the backend published itself
                log.warning("request record not marked %s: %s", what, conflict)
            return conflict.current
        except StoreUnavailable as error:
            log.warning("request record not marked %s: %s", what, error)
        return None


def _unless_cancelled(record: RequestRecord | None) -> None:
    """RequestCancelled when `record` says the backend cancelled the request."""
    if record is not None and record.state is RequestState.CANCELLED:
        raise RequestCancelled(f"request {record.request_id} was cancelled")
