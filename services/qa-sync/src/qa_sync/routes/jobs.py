"""The job APIs (an API key each): register a batch, read a job, fetch its QA pairs."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse
from llm_common.contracts import Envelope
from llm_common.envelope import envelope_response
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from qa_sync.deps import ComponentsDep, WorkDep, require_api_key
from qa_sync.fetch import JobBusy, JobNotReady, JobPending, PairFormat, PairsUnavailable
from qa_sync.registry.jobs import JobNotFound, TaskIdTaken
from qa_sync.storage import StorageError
from qa_sync.views import JobView

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


router = APIRouter(tags=["jobs"], dependencies=[Depends(require_api_key)])


@router.post("/jobs", status_code=201, responses={201: {"model": Envelope[JobView]}})
def register(request: Registration, components: ComponentsDep) -> JSONResponse:
    try:
        registered = components.registry.register(
            request.influencer_id, request.batch_id, request.batch_key, request.task_id
        )
    except TaskIdTaken as error:
        return envelope_response(409, str(error))
    return envelope_response(201, "registered", JobView.of(registered).model_dump(mode="json"))


@router.get("/jobs/{task_id}", responses={200: {"model": Envelope[JobView]}})
def job(task_id: TaskId, components: ComponentsDep) -> JSONResponse:
    try:
        found = components.registry.get(task_id)
    except JobNotFound:
        return envelope_response(404, f"no job {task_id}")
    return envelope_response(200, "ok", JobView.of(found).model_dump(mode="json"))


@router.get("/jobs/{task_id}/qa-pairs", response_model=None)
def qa_pairs(
    task_id: TaskId,
    components: ComponentsDep,
    work: WorkDep,
    format: Annotated[PairFormat, Query()] = PairFormat.JSON,
) -> Response:
    try:
        fetched = components.fetcher.fetch(task_id)
    except JobNotFound:
        return envelope_response(404, f"no job {task_id}")
    except JobPending as error:
        # The webhook may have been missed and the poller not come round yet: the background
        # sync looks now; the client asks again after Retry-After.
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
        fetched.body(format, components.settings.finetune_system_prompt),
        media_type=MEDIA_TYPES[format],
        headers={"X-QA-Source": fetched.source.value},
        background=BackgroundTask(fetched.document.close),
    )


def _retry_later(status: int, message: str, data: dict[str, str] | None = None) -> JSONResponse:
    return envelope_response(status, message, data, {"Retry-After": RETRY_AFTER_SECONDS})
