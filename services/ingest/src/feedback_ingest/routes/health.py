"""Probes: /healthz (the process answers) and /readyz (the queue answers too)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from llm_common.envelope import envelope_response

from feedback_ingest.deps import ReadinessDep
from feedback_ingest.readiness import REACHABLE

router = APIRouter(tags=["probes"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return envelope_response(200, "ok")


@router.get(
    "/readyz",
    summary="Readiness: the feedback queue takes messages and the request store answers "
    "(checked at most every 5 s)",
    responses={503: {"description": "The queue or the request store cannot take a request."}},
)
async def readyz(readiness: ReadinessDep) -> JSONResponse:
    status = await readiness.status()
    if all(state == REACHABLE for state in status.values()):
        return envelope_response(200, "ready", status)
    return envelope_response(503, "not ready", status)
