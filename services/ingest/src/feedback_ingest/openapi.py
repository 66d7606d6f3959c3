"""What /openapi.json says about POST /ai/feedback, and DELETE's answers.

The route reads its body itself (size cap, envelope errors), so FastAPI does not see a body
parameter: the request schema, its example and the responses are declared here instead.
"""

from typing import Any

from fastapi import FastAPI
from llm_common.contracts import Envelope, FeedbackRequest, RequestId, RequestRef
from llm_common.contracts.example import example_weekly_record
from llm_common.contracts.status import RequestStatus
from llm_common.envelope import InvalidFields
from pydantic import TypeAdapter

from feedback_ingest.jobs import IDEMPOTENCY_KEY_HEADER

REQUEST_SCHEMA_NAME = "FeedbackRequest"

FEEDBACK_EXAMPLE = example_weekly_record("1024-weekly-2025-06-16")

# Merged into the generated operation. The header is read from the request, not declared as a
# FastAPI parameter: a declared one would add a 422 response the service never sends.
OPERATION_EXTRA: dict[str, Any] = {
    "parameters": [
        {
            "name": IDEMPOTENCY_KEY_HEADER,
            "in": "header",
            "required": False,
            "description": "The request id when the body has none; must equal `requestId` "
            "when both are sent.",
            "schema": TypeAdapter(RequestId).json_schema(),
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{REQUEST_SCHEMA_NAME}"},
                "example": FEEDBACK_EXAMPLE,
            }
        },
    },
}


def _envelope_example(
    status: int, message: str, data: dict[str, Any] | None, model: type[Envelope[Any]] = Envelope
) -> dict[str, Any]:
    """`model`: the envelope with its data's shape, where the answer has one."""
    return {
        "model": model,
        "content": {
            "application/json": {"example": {"status": status, "message": message, "data": data}}
        },
    }


RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Accepted: SQS has the message.",
        **_envelope_example(
            202, "accepted", {"requestId": FEEDBACK_EXAMPLE["requestId"]}, Envelope[RequestRef]
        ),
    },
    400: {
        "description": "The body, its JSON, its encoding or its Content-Type is invalid; "
        "`data.errors` names each failing field.",
        **_envelope_example(
            400,
            "invalid request",
            {
                "errors": [
                    {
                        "field": "groupChallenges[0].submissions[1].submittedAt",
                        "message": "Value error, not an ISO-8601 local date-time: 'yesterday'",
                    }
                ]
            },
            Envelope[InvalidFields],
        ),
    },
    401: {
        "description": "API keys are configured and none valid was sent.",
        **_envelope_example(401, "missing or invalid API key", None),
    },
    409: {
        "description": "The requestId is another member's (a request id belongs to the member "
        "that used it first); send an id of your own.",
        **_envelope_example(
            409,
            "requestId is already used by another member; send a request id of your own",
            {"requestId": FEEDBACK_EXAMPLE["requestId"]},
            Envelope[RequestRef],
        ),
    },
    413: {
        "description": "The body exceeds MAX_BODY_BYTES (or, normalised, the SQS message limit).",
        **_envelope_example(413, "request body too large", {"maxBytes": 262144}),
    },
    503: {
        "description": "The queue or the request store did not take the request: it is not "
        "accepted. Retry the same body with the same requestId after `Retry-After` seconds; it "
        "is never a second job.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        **_envelope_example(503, "queue unavailable, retry later", None),
    },
}


def _status_example(state: str, attempts: int, **times: str) -> dict[str, Any]:
    """A request's status (`RequestStatus`) as GET and DELETE show it."""
    return {
        "requestId": FEEDBACK_EXAMPLE["requestId"],
        "memberId": 1024,
        "state": state,
        "deadline": "2025-06-23T09:00:00+00:00",
        "attempts": attempts,
        "times": {
            "acceptedAt": "2025-06-16T09:00:00.120000+00:00",
            "enqueuedAt": "2025-06-16T09:00:00.180000+00:00",
            **times,
        },
    }


CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Cancelled (now, or by an earlier cancel): no LLM call, no delivery.",
        **_envelope_example(
            200,
            "cancelled",
            _status_example("cancelled", 0, cancelledAt="2025-06-16T09:00:04.500000+00:00"),
            Envelope[RequestStatus],
        ),
    },
    401: RESPONSES[401],
    404: {
        "description": "No request with this id (or its record has expired), or ingest keeps "
        "no records (REQUEST_TABLE_NAME empty).",
        **_envelope_example(
            404, "unknown request id", {"requestId": FEEDBACK_EXAMPLE["requestId"]}
        ),
    },
    409: {
        "description": "Too late: a worker has asked the LLM (`generating`), or the request "
        "has a result or has ended; `data` is its status.",
        **_envelope_example(
            409,
            "request is generating: too late to cancel",
            _status_example("generating", 1, generatingAt="2025-06-16T09:00:02.300000+00:00"),
            Envelope[RequestStatus],
        ),
    },
    503: {
        "description": "The request store did not answer: the request is not cancelled. Send "
        "the DELETE again after `Retry-After` seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        **_envelope_example(503, "request store unavailable, retry later", None),
    },
}


def request_schemas() -> dict[str, Any]:
    """`FeedbackRequest` and the models it nests, keyed for `components.schemas`."""
    schema = FeedbackRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    nested = schema.pop("$defs", {})
    return {**nested, REQUEST_SCHEMA_NAME: schema}


def document_request_body(app: FastAPI) -> None:
    """Add the request schemas to the document FastAPI generates."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        document.setdefault("components", {}).setdefault("schemas", {}).update(request_schemas())
        return document

    app.openapi = openapi  # type: ignore[method-assign]
