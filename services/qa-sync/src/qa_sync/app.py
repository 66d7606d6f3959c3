"""qa-sync's HTTP side: the OpenAI webhook, job status, QA pairs for fine-tuning, health.

Every answer is the envelope (llm_common.envelope). The job and QA-pair APIs return an
influencer's data, so they take an API key; the webhook proves itself with its signature.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from llm_common.api_keys import matches_any
from llm_common.envelope import envelope_response, install_envelope_handlers
from llm_common.request_body import read_capped_body
from llm_common.telemetry.web import instrument_fastapi, mount_metrics
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from qa_sync.background import BackgroundWork
from qa_sync.components import Components
from qa_sync.fetch import JobBusy, JobNotReady, JobPending, PairFormat, PairsUnavailable
from qa_sync.registry.jobs import JobNotFound, TaskIdTaken
from qa_sync.storage import BucketMissing, StorageError
from qa_sync.views import JobView
from qa_sync.webhooks import SIGNATURE_HEADERS, WebhookNotConfigured, WebhookRejected

log = logging.getLogger(__name__)

MEDIA_TYPES = {PairFormat.JSON: "application/json", PairFormat.CHAT_JSONL: "application/x-ndjson"}
RETRY_AFTER_SECONDS = "5"

# Task ids go into S3 keys and SQL: control characters (PostgreSQL refuses NUL outright) are
# bad input, answered 400 before anything looks them up.
_NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]{1,255}$"
TaskId = Annotated[str, Path(pattern=_NO_CONTROL_CHARACTERS)]


class Registration(BaseModel):
    """`POST /jobs`: the API's `register`; `task_id` adopts a batch under an existing task id."""

    influencer_id: Annotated[str, Field(pattern=_NO_CONTROL_CHARACTERS)]
    batch_id: Annotated[str, Field(pattern=_NO_CONTROL_CHARACTERS)]
    batch_key: Annotated[str | None, Field(pattern=_NO_CONTROL_CHARACTERS)] = None
    task_id: Annotated[str | None, Field(pattern=_NO_CONTROL_CHARACTERS)] = None


# auto_error=False: a missing key is answered in the envelope; the schemes are declared so that
# the OpenAPI document shows both ways to authenticate.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def create_app(components: Components, *, background: bool = True) -> FastAPI:
    """The app; `background=False` leaves out the sync worker, poller and reconciler."""
    work = BackgroundWork(components)
    settings = components.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await asyncio.to_thread(components.storage.check_bucket)
        except BucketMissing as error:
            # Not fatal: /readyz says the same until the bucket exists, then the pod is ready.
            log.error("%s", error)
        except StorageError as error:
            log.warning("S3 not reachable at start-up: %s", error)
        if background:
            work.start()
        yield
        await work.stop()

    def require_api_key(
        api_key: Annotated[str | None, Security(_api_key_header)],
        authorization: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> None:
        if not settings.qa_sync_api_keys:
            raise HTTPException(503, "QA_SYNC_API_KEYS is not set: the job APIs are closed")
        presented = (
            api_key if api_key is not None else (authorization and authorization.credentials)
        )
        if not presented or not matches_any(presented, settings.qa_sync_api_keys):
            raise HTTPException(401, "missing or invalid API key", {"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="qa-sync", lifespan=lifespan)
    install_envelope_handlers(app)
    instrument_fastapi(app)
    mount_metrics(app)
    authenticated = [Depends(require_api_key)]

    @app.post("/webhooks/openai")
    async def openai_webhook(request: Request) -> JSONResponse:
        try:
            components.webhooks.check_configured()
        except WebhookNotConfigured as error:
            return envelope_response(503, str(error))
        missing = [name for name in SIGNATURE_HEADERS if name not in request.headers]
        if missing:
            # Unsigned: refused before a byte of the body is read.
            return envelope_response(400, f"webhook rejected: missing {', '.join(missing)}")
        body = await read_capped_body(request, settings.webhook_max_body_bytes)
        try:
            receipt = await asyncio.to_thread(
                components.webhooks.receive, body, dict(request.headers)
            )
        except WebhookRejected as error:
            return envelope_response(400, f"webhook rejected: {error}")
        if receipt.wants_sync and receipt.batch_id:
            work.request_sync(receipt.batch_id)
        message = (
            "duplicate" if receipt.duplicate else "accepted" if receipt.batch_id else "ignored"
        )
        return envelope_response(
            200,
            message,
            {
                "webhook_id": receipt.webhook_id,
                "type": receipt.event_type,
                "batch_id": receipt.batch_id,
            },
        )

    @app.post("/jobs", dependencies=authenticated)
    def register(request: Registration) -> JSONResponse:
        try:
            registered = components.registry.register(
                request.influencer_id, request.batch_id, request.batch_key, request.task_id
            )
        except TaskIdTaken as error:
            return envelope_response(409, str(error))
        return envelope_response(201, "registered", JobView.of(registered).model_dump(mode="json"))

    @app.get("/jobs/{task_id}", dependencies=authenticated)
    def job(task_id: TaskId) -> JSONResponse:
        try:
            found = components.registry.get(task_id)
        except JobNotFound:
            return envelope_response(404, f"no job {task_id}")
        return envelope_response(200, "ok", JobView.of(found).model_dump(mode="json"))

    @app.get("/jobs/{task_id}/qa-pairs", response_model=None, dependencies=authenticated)
    def qa_pairs(
        task_id: TaskId, format: Annotated[PairFormat, Query()] = PairFormat.JSON
    ) -> Response:
        try:
            fetched = components.fetcher.fetch(task_id)
        except JobNotFound:
            return envelope_response(404, f"no job {task_id}")
        except JobPending as error:
            # The webhook may have been missed and the poller not come round yet: the
            # background sync looks now; the client asks again after Retry-After.
            if error.batch_id:
                work.request_sync(error.batch_id)
            return _retry_later(202, f"sync requested: {error}", {"task_id": task_id})
        except JobNotReady as error:
            return envelope_response(409, f"not finished yet: {error}")
        except JobBusy as error:
            return _retry_later(503, f"being repaired: {error}")
        except PairsUnavailable as error:
            return envelope_response(502, f"pairs unavailable: {error}")
        except StorageError as error:
            return envelope_response(503, f"storage unavailable: {error}")
        return StreamingResponse(
            fetched.body(format, settings.finetune_system_prompt),
            media_type=MEDIA_TYPES[format],
            headers={"X-QA-Source": fetched.source.value},
            background=BackgroundTask(fetched.document.close),
        )

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return envelope_response(200, "ok")

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            components.registry.ping()
            components.storage.check_bucket()
        except (SQLAlchemyError, StorageError) as error:
            return envelope_response(503, f"not ready: {error}")
        return envelope_response(200, "ready")

    return app


def _retry_later(status: int, message: str, data: dict[str, str] | None = None) -> JSONResponse:
    return envelope_response(status, message, data, {"Retry-After": RETRY_AFTER_SECONDS})
