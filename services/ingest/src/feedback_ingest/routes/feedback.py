"""POST /ai/feedback: validate the backend's weekly record and put it on the feedback queue."""

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from llm_common.telemetry import log_context, metrics

from feedback_ingest import openapi
from feedback_ingest.auth import require_api_key
from feedback_ingest.body import read_feedback_request
from feedback_ingest.deps import QueueDep, SettingsDep
from feedback_ingest.jobs import IDEMPOTENCY_KEY_HEADER, feedback_job, resolve_request_id
from feedback_ingest.responses import envelope_response

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
async def accept_feedback(request: Request, settings: SettingsDep, queue: QueueDep) -> JSONResponse:
    """Answers 202 only once SQS has accepted the message."""
    feedback = await read_feedback_request(request, settings.max_body_bytes)
    request_id = resolve_request_id(feedback, request.headers.get(IDEMPOTENCY_KEY_HEADER))
    with log_context(request_id=request_id, member_id=feedback.member_id):
        message_id = await queue.enqueue(feedback_job(feedback, request_id))
        logger.info(
            "accepted request %s for member %s as message %s",
            request_id,
            feedback.member_id,
            message_id,
        )
    metrics.INGEST_REQUESTS_ACCEPTED.inc()
    return envelope_response(202, "accepted", {"requestId": request_id})
