"""POST /ai/feedback: validate the backend's weekly record and put it on the feedback queue;
GET and DELETE /ai/feedback/{requestId}: what became of it, and its cancellation."""

import functools
import logging
from datetime import UTC
from enum import Enum

import anyio.to_thread
from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import JSONResponse
from llm_common.contracts import Envelope, FeedbackJob, RequestRef
from llm_common.contracts.status import RequestStatus
from llm_common.envelope import envelope_response
from llm_common.requests_store import RequestState, RequestStore, StateConflict, StoreUnavailable
from llm_common.telemetry import log_context, metrics

from feedback_ingest import openapi
from feedback_ingest.body import read_feedback_request
from feedback_ingest.deps import QueueDep, SettingsDep, StoreDep, require_api_key
from feedback_ingest.jobs import IDEMPOTENCY_KEY_HEADER, feedback_job, resolve_request_id

logger = logging.getLogger(__name__)

router = APIRouter(tags=["feedback"])


@router.post(
    "/ai/feedback",
    status_code=202,
    summary="Queue a member's weekly record for feedback",
    dependencies=[Depends(require_api_key)],
    responses=openapi.RESPONSES,
    openapi_extra=openapi.OPERATION_EXTRA,
)
async def accept_feedback(
    request: Request,
    settings: SettingsDep,
    queue: QueueDep,
    store: StoreDep,
    after_answer: BackgroundTasks,
) -> JSONResponse:
    """Answers 202 only once SQS has accepted the message.

    Write order, so that no 202 goes out without the message on the queue and no request makes
    two jobs, whichever of the two writes fails:
    1. the store's conditional put. It fails → 503, nothing queued. It finds the id already
       there → a retry: 202 with the same id once the message is known to be queued
       (`enqueuedAt` set, or the worker already moved the record on), no second send.
    2. SendMessage with the request id as deduplication id. It fails → 503; the record stays
       `accepted` without `enqueuedAt`, so the backend's retry sends again (step 1's retry path).
    3. `enqueuedAt` set, once the 202 is on its way (bookkeeping is no part of the acceptance,
       and the backend does not wait for it). It fails → a retry sends again.
    A send repeated by 2 or 3 is dropped by SQS within its 5-minute window; after it, the worker's
    conditional `processing` transition refuses a copy of a request already delivered, and a
    copy waits behind the original in the member's message group, so a second message can never
    become a second job.
    """
    feedback = await read_feedback_request(request, settings.max_body_bytes)
    idempotency_key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    request_id = resolve_request_id(feedback, idempotency_key, remembered=store is not None)
    job = feedback_job(feedback, request_id, settings.request_ttl_seconds)
    with log_context(request_id=request_id, member_id=feedback.member_id):
        acceptance = Acceptance.NEW if store is None else await _acceptance(store, job)
        if acceptance is Acceptance.QUEUED:
            logger.info(
                "request %s is a retry of an accepted request: not queued again", request_id
            )
            return envelope_response(202, "accepted", RequestRef(request_id=request_id))
        message_id = await queue.enqueue(job, resent=acceptance is Acceptance.RESEND)
        if store is not None:
            after_answer.add_task(_mark_enqueued, store, request_id)
        logger.info(
            "accepted request %s for member %s as message %s",
            request_id,
            feedback.member_id,
            message_id,
        )
    metrics.INGEST_REQUESTS_ACCEPTED.inc()
    return envelope_response(202, "accepted", RequestRef(request_id=request_id))


class Acceptance(Enum):
    NEW = "new"
    """First seen: send it."""
    QUEUED = "queued"
    """A retry of a request known to be on the queue (or beyond): send nothing."""
    RESEND = "resend"
    """A retry of a request whose send failed or was not confirmed: send it again, flagged, so
    the worker reads the record before working a copy it may already have worked."""


async def _acceptance(store: RequestStore, job: FeedbackJob) -> Acceptance:
    assert job.request_id is not None
    assert job.deadline is not None
    deadline = job.deadline.replace(tzinfo=UTC)
    accept = functools.partial(store.accept, job.request_id, job.member_id, deadline)
    existing = await anyio.to_thread.run_sync(accept)
    if existing is None:
        return Acceptance.NEW
    if existing.enqueued_at is not None or existing.state is not RequestState.ACCEPTED:
        return Acceptance.QUEUED
    return Acceptance.RESEND


async def _mark_enqueued(store: RequestStore, request_id: str) -> None:
    try:
        await anyio.to_thread.run_sync(store.mark_enqueued, request_id)
    except (StoreUnavailable, StateConflict) as error:
        logger.warning("request %s queued, but its record not updated: %s", request_id, error)


@router.get(
    "/ai/feedback/{request_id}",
    summary="What became of a request: its state, times, attempts, result or failure reason",
    dependencies=[Depends(require_api_key)],
    responses={
        200: {"model": Envelope[RequestStatus]},
        404: {"description": "No request with this id (or its record has expired)."},
    },
)
async def feedback_status(request_id: str, store: StoreDep) -> JSONResponse:
    if store is None:
        return _no_store(request_id)
    record = await anyio.to_thread.run_sync(store.get, request_id)
    if record is None:
        return _unknown(request_id)
    return envelope_response(200, record.state.value, RequestStatus.of(record).shown())


@router.delete(
    "/ai/feedback/{request_id}",
    summary="Cancel a request that no worker has sent to the LLM yet",
    dependencies=[Depends(require_api_key)],
    responses=openapi.CANCEL_RESPONSES,
)
async def cancel_feedback(request_id: str, store: StoreDep) -> JSONResponse:
    """One conditional write (RequestStore.cancel), never a read then a write: the worker's
    `generating` write, just before its LLM call, races it on the record's state, and
    DynamoDB's condition decides which came first. 200 again for a request cancelled already,
    so a client that retries a DELETE whose answer it lost gets the same answer."""
    if store is None:
        return _no_store(request_id)
    try:
        record = await anyio.to_thread.run_sync(store.cancel, request_id)
    except StateConflict as conflict:
        if conflict.current is None:
            return _unknown(request_id)
        status = RequestStatus.of(conflict.current)
        message = f"request is {status.state}: too late to cancel"
        return envelope_response(409, message, status.shown())
    logger.info("request %s cancelled", request_id)
    return envelope_response(200, record.state.value, RequestStatus.of(record).shown())


def _no_store(request_id: str) -> JSONResponse:
    message = "request status is not kept here (no request store: REQUEST_TABLE_NAME)"
    return envelope_response(404, message, RequestRef(request_id=request_id))


def _unknown(request_id: str) -> JSONResponse:
    return envelope_response(404, "unknown request id", RequestRef(request_id=request_id))
