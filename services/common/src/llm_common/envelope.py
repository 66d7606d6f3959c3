"""Every HTTP answer of the platform is the envelope `{status, message, data}`, errors included.

FastAPI's own answers (its 422 body, Starlette's plain-text 404/405, the plain-text 500 of an
unhandled error) never reach a client: the backend parses the envelope and nothing else. Both
ingest and qa-sync answer through these helpers.
"""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from typing_extensions import TypedDict

from llm_common.contracts import Envelope
from llm_common.request_body import BodyTooLarge, BodyUnreadable

logger = logging.getLogger(__name__)


class FieldError(TypedDict):
    field: str
    """Where the problem is: `groupChallenges[0].submissions[1].submittedAt`, a header name,
    or `body` for the body as a whole."""
    message: str


class InvalidFields(TypedDict):
    """The data of a 400: every failing field, each with its message."""

    errors: list[FieldError]


def envelope_response(
    status: int,
    message: str,
    data: BaseModel | dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """`data` a contract (RequestRef, ...) is written as on the wire: camelCase."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json", by_alias=True)
    body = Envelope[dict[str, Any]](status=status, message=message, data=data)
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def field_path(loc: Sequence[int | str]) -> str:
    """`("groupChallenges", 0, "submissions")` → `groupChallenges[0].submissions`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "body"


def install_envelope_handlers(app: FastAPI) -> None:
    """Starlette's 404/405, FastAPI's request validation, a body over its cap or unreadable
    (request_body.py) and unhandled errors, as envelopes."""

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        # Starlette's 404 for unknown paths and 405 (with its Allow header) for wrong methods.
        return envelope_response(error.status_code, error.detail, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        # A bad path or query parameter: the client's mistake, so a 400 like any bad input.
        # The input values are left out on purpose: they are the client's own data.
        errors = [
            FieldError(field=field_path(e["loc"][1:] or e["loc"]), message=e["msg"])
            for e in error.errors()
        ]
        return envelope_response(400, "invalid request", {"errors": errors})

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(_: Request, error: BodyTooLarge) -> JSONResponse:
        return envelope_response(413, "request body too large", {"maxBytes": error.max_bytes})

    @app.exception_handler(BodyUnreadable)
    async def body_unreadable(_: Request, error: BodyUnreadable) -> JSONResponse:
        errors = [FieldError(field=error.field, message=error.reason)]
        return envelope_response(400, "invalid request", {"errors": errors})

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        # Only a bug gets here: bad input is answered by the service's own handlers. The
        # details stay in the log.
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return envelope_response(500, "internal error")
