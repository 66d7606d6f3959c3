"""Probes: /healthz (the process answers) and /readyz (the registry and the bucket answer)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from llm_common.envelope import envelope_response
from sqlalchemy.exc import SQLAlchemyError

from qa_sync.deps import ComponentsDep
from qa_sync.storage import StorageError

router = APIRouter(tags=["probes"])


@router.get("/healthz")
def healthz() -> JSONResponse:
    return envelope_response(200, "ok")


@router.get("/readyz")
def readyz(components: ComponentsDep) -> JSONResponse:
    try:
        components.registry.ping()
        components.storage.check_bucket()
    except (SQLAlchemyError, StorageError) as error:
        return envelope_response(503, f"not ready: {error}")
    return envelope_response(200, "ready")
