"""Probes: /healthz (the process answers) and /readyz (the queue answers too)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from feedback_ingest.deps import ReadinessDep
from feedback_ingest.responses import envelope_response

router = APIRouter(tags=["probes"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return envelope_response(200, "ok")


@router.get(
    "/readyz",
    summary="Readiness: the feedback queue answers (checked at most every 5 s)",
    responses={503: {"description": "The feedback queue does not answer."}},
)
async def readyz(readiness: ReadinessDep) -> JSONResponse:
    if await readiness.is_ready():
        return envelope_response(200, "ready", {"queue": "reachable"})
    return envelope_response(503, "not ready", {"queue": "unreachable"})
