"""The response body every HTTP answer of the platform carries."""

from typing import Any

from pydantic import BaseModel


class Envelope(BaseModel):
    """`{"status": <int>, "message": <text>, "data": <object|null>}` (docs/backend-contract.md)."""

    status: int
    message: str
    data: dict[str, Any] | None = None
