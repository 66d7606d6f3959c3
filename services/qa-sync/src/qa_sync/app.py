"""qa-sync's HTTP side: the OpenAI webhook, job status, QA pairs for fine-tuning, health."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from llm_common.contracts.envelope import Envelope
from llm_common.telemetry import instrument_fastapi, mount_metrics
from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTask

from qa_sync.background import BackgroundWork
from qa_sync.components import Components
from qa_sync.fetch import JobBusy, JobNotReady, JobPending, PairFormat, PairsUnavailable
from qa_sync.registry.jobs import JobNotFound
from qa_sync.storage import StorageError
from qa_sync.views import JobView
from qa_sync.webhooks import WebhookNotConfigured, WebhookRejected

MEDIA_TYPES = {PairFormat.JSON: "application/json", PairFormat.CHAT_JSONL: "application/x-ndjson"}
RETRY_AFTER_SECONDS = "5"


def envelope(status: int, message: str, data: dict[str, Any] | None = None) -> JSONResponse:
    body = Envelope(status=status, message=message, data=data)
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


def create_app(components: Components, *, background: bool = True) -> FastAPI:
    """The app; `background=False` leaves out the sync worker, poller and reconciler."""
    work = BackgroundWork(components)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if background:
            work.start()
        yield
        await work.stop()

    app = FastAPI(title="qa-sync", lifespan=lifespan)
    instrument_fastapi(app)
    mount_metrics(app)

    @app.post("/webhooks/openai")
    async def openai_webhook(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            receipt = await asyncio.to_thread(
                components.webhooks.receive, body, dict(request.headers)
            )
        except WebhookNotConfigured as error:
            return envelope(503, str(error))
        except WebhookRejected as error:
            return envelope(400, f"webhook rejected: {error}")
        if receipt.wants_sync and receipt.batch_id:
            work.request_sync(receipt.batch_id)
        message = (
            "duplicate" if receipt.duplicate else "accepted" if receipt.batch_id else "ignored"
        )
        return envelope(
            200,
            message,
            {
                "webhook_id": receipt.webhook_id,
                "type": receipt.event_type,
                "batch_id": receipt.batch_id,
            },
        )

    @app.get("/jobs/{task_id}")
    def job(task_id: str) -> JSONResponse:
        try:
            found = components.registry.get(task_id)
        except JobNotFound:
            return envelope(404, f"no job {task_id}")
        return envelope(200, "ok", JobView.of(found).model_dump(mode="json"))

    @app.get("/jobs/{task_id}/qa-pairs", response_model=None)
    def qa_pairs(
        task_id: str, format: Annotated[PairFormat, Query()] = PairFormat.JSON
    ) -> Response:
        try:
            fetched = components.fetcher.fetch(task_id)
        except JobNotFound:
            return envelope(404, f"no job {task_id}")
        except JobPending as error:
            # The webhook may have been missed and the poller not come round yet: the
            # background sync looks now; the client asks again after Retry-After.
            if error.batch_id:
                work.request_sync(error.batch_id)
            response = envelope(202, f"sync requested: {error}", {"task_id": task_id})
            response.headers["Retry-After"] = RETRY_AFTER_SECONDS
            return response
        except JobNotReady as error:
            return envelope(409, f"not finished yet: {error}")
        except JobBusy as error:
            response = envelope(503, f"being repaired: {error}")
            response.headers["Retry-After"] = RETRY_AFTER_SECONDS
            return response
        except PairsUnavailable as error:
            return envelope(502, f"pairs unavailable: {error}")
        except StorageError as error:
            return envelope(503, f"storage unavailable: {error}")
        return StreamingResponse(
            fetched.body(format, components.settings.finetune_system_prompt),
            media_type=MEDIA_TYPES[format],
            headers={"X-QA-Source": fetched.source.value},
            background=BackgroundTask(fetched.document.close),
        )

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return envelope(200, "ok")

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            components.registry.ping()
            components.storage.check_bucket()
        except (SQLAlchemyError, StorageError) as error:
            return envelope(503, f"not ready: {error}")
        return envelope(200, "ready")

    return app
