"""`POST /webhooks/openai`: OpenAI's batch events, proven by their signature (no API key)."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from llm_common.envelope import envelope_response
from llm_common.request_body import read_capped_body

from qa_sync.deps import ComponentsDep, WorkDep
from qa_sync.webhooks import SIGNATURE_HEADERS, WebhookNotConfigured, WebhookRejected

router = APIRouter(tags=["webhooks"])


@router.post("/webhooks/openai")
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
    return envelope_response(
        200,
        message,
        {
            "webhook_id": receipt.webhook_id,
            "type": receipt.event_type,
            "batch_id": receipt.batch_id,
        },
    )
