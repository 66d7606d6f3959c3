"""`POST /webhooks/openai`: OpenAI's batch events, proven by their signature (no API key)."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from llm_common.contracts import Envelope
from llm_common.envelope import envelope_response
from llm_common.request_body import read_capped_body
from pydantic import BaseModel

from qa_sync.deps import ComponentsDep, WorkDep
from qa_sync.webhooks import SIGNATURE_HEADERS, WebhookNotConfigured, WebhookRejected

router = APIRouter(tags=["webhooks"])


class WebhookAnswer(BaseModel):
    """The data of a 200: the event's id and type, and the batch it is about (if any)."""

    webhook_id: str
    type: str
    batch_id: str | None


@router.post("/webhooks/openai", responses={200: {"model": Envelope[WebhookAnswer]}})
async def openai_webhook(
    request: Request, components: ComponentsDep, work: WorkDep
) -> JSONResponse:
    try:
        components.webhooks.check_configured()
    except WebhookNotConfigured as error:
        return envelope_response(503, str(error))
    missing = [name for name in SIGNATURE_HEADERS if name not in request.headers]
    if missing:
        # Unsigned: refused before a byte of the body is read.
        return envelope_response(400, f"webhook rejected: missing {', '.join(missing)}")
    body = await read_capped_body(request, components.settings.webhook_max_body_bytes)
    try:
        receipt = await asyncio.to_thread(components.webhooks.receive, body, dict(request.headers))
    except WebhookRejected as error:
        return envelope_response(400, f"webhook rejected: {error}")
    if receipt.wants_sync and receipt.batch_id:
        work.request_sync(receipt.batch_id)
    message = "duplicate" if receipt.duplicate else "accepted" if receipt.batch_id else "ignored"
    answer = WebhookAnswer(
        webhook_id=receipt.webhook_id, type=receipt.event_type, batch_id=receipt.batch_id
    )
    return envelope_response(200, message, answer.model_dump())
