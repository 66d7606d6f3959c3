"""The errors a client can cause or act on, and the handlers that turn every error into an envelope.

FastAPI's own answers (its 422 body, its plain-text 500) never reach a client: the backend
parses `{status, message, data}` and nothing else.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from llm_common.api_keys import ApiKeyRejected, ApiKeysNotSet
from llm_common.contracts import RequestRef
from llm_common.envelope import FieldError, envelope_response, field_path, install_envelope_handlers
from llm_common.requests_store import RequestIdTaken, StoreUnavailable
from llm_common.telemetry import metrics
from llm_common.telemetry.names import RejectReason
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from feedback_ingest.queue import MessageTooLarge, QueueUnavailable

logger = logging.getLogger(__name__)

ExceptionHandler = Callable[[Request, Exception], Awaitable[JSONResponse]]


class ApiError(Exception):
    """An answer the client caused; subclasses fix the status and the message."""

    status: ClassVar[int]
    message: ClassVar[str]
    reject_reason: ClassVar[RejectReason]

    def __init__(
        self, data: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(self.message)
        self.data = data
        self.headers = headers


class InvalidRequest(ApiError):
    status = 400
    message = "invalid request"
    reject_reason = RejectReason.INVALID_BODY

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__(data={"errors": list(errors)})

    @classmethod
    def about(cls, field: str, message: str) -> "InvalidRequest":
        return cls([FieldError(field=field, message=message)])

    @classmethod
    def from_validation(cls, error: ValidationError) -> "InvalidRequest":
        # The input values are left out on purpose: they can be large, and they are the
        # client's own data.
        return cls(
            [FieldError(field=field_path(e["loc"]), message=e["msg"]) for e in error.errors()]
        )


class PayloadTooLarge(ApiError):
    status = 413
    message = "request body too large"
    reject_reason = RejectReason.TOO_LARGE

    def __init__(self, max_bytes: int) -> None:
        super().__init__(data={"maxBytes": max_bytes})


def install_error_handlers(app: FastAPI, retry_after_seconds: int) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        _count_rejection(error.reject_reason)
        return envelope_response(error.status, error.message, error.data, error.headers)

    key_refusals = {
        ApiKeyRejected: RejectReason.UNAUTHORIZED,
        ApiKeysNotSet: RejectReason.API_CLOSED,
    }

    async def api_key_refused(_: Request, error: HTTPException) -> JSONResponse:
        # The platform's one API-key rule (llm_common/api_keys.py), counted as ingest's refusals.
        _count_rejection(key_refusals[type(error)])
        return envelope_response(error.status_code, error.detail, headers=error.headers)

    for refusal in key_refusals:
        app.exception_handler(refusal)(api_key_refused)

    @app.exception_handler(MessageTooLarge)
    async def message_too_large(_: Request, error: MessageTooLarge) -> JSONResponse:
        # The body was under MAX_BODY_BYTES but grew past SQS's limit when normalised: as
        # permanent as an oversized body, so not a 503 the client would retry forever.
        _count_rejection(RejectReason.TOO_LARGE)
        return envelope_response(413, str(error), {"maxBytes": error.max_bytes})

    def unavailable(what: str, reason: RejectReason) -> ExceptionHandler:
        async def answer(_: Request, error: Exception) -> JSONResponse:
            # Nothing was queued that a retry would repeat (routes/feedback.py writes the store
            # first and answers 202 only after SQS took the message): retrying the same body
            # with the same request id is safe, and the right answer to this 503.
            logger.warning("%s unavailable, answering 503: %s", what, error)
            _count_rejection(reason)
            return envelope_response(
                503,
                f"{what} unavailable, retry later",
                headers={"Retry-After": str(retry_after_seconds)},
            )

        return answer

    app.add_exception_handler(
        QueueUnavailable, unavailable("queue", RejectReason.QUEUE_UNAVAILABLE)
    )
    app.add_exception_handler(
        StoreUnavailable, unavailable("request store", RejectReason.STORE_UNAVAILABLE)
    )

    @app.exception_handler(RequestIdTaken)
    async def request_id_taken(_: Request, error: RequestIdTaken) -> JSONResponse:
        _count_rejection(RejectReason.REQUEST_ID_TAKEN)
        return envelope_response(
            409,
            "requestId is already used by another member; send a request id of your own",
            RequestRef(request_id=error.request_id),
        )

    install_envelope_handlers(app)


def _count_rejection(reason: RejectReason) -> None:
    metrics.INGEST_REQUESTS_REJECTED.labels(reason).inc()
