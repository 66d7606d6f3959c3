"""The response body every HTTP answer of the platform carries."""

from typing import Any

from pydantic import BaseModel


class Envelope(BaseModel):
    """`{"status": <int>, "message": <text>, "data": <object|null>}` (design.md §3)."""

    status: int
    message: str
    data: dict[str, Any] | None = None
