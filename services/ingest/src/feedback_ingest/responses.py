"""Every answer of the service is the platform's envelope, errors included.

The envelope is defined in docs/backend-contract.md (Envelope).
"""

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse
from llm_common.contracts import Envelope


def envelope_response(
    status: int,
    message: str,
    data: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = Envelope(status=status, message=message, data=data)
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)
