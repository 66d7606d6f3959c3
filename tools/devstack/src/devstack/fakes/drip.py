"""A dripping answer: status and headers at once, then the body one byte every `every_s`
seconds, the peer that per-read timeouts never end (each read gets its byte in time)."""

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

from fastapi.responses import StreamingResponse


def dripping(
    body: bytes,
    every_s: float,
    on_end: Callable[[], None],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    media_type: str = "application/json",
) -> StreamingResponse:
    """`body` dripped; `on_end` is called once the last byte is sent or the client hangs up
    (the server notices at once and stops)."""

    async def drip() -> AsyncIterator[bytes]:
        try:
            for byte in body:
                await asyncio.sleep(every_s)
                yield bytes([byte])
        finally:
            on_end()

    return StreamingResponse(drip(), status_code=status, headers=headers, media_type=media_type)
