"""Reading a request body ourselves, size-capped: one reader for every service's HTTP surface.

FastAPI would read a body of any size into memory before a handler could refuse it. Here a body
is refused as soon as it is known to exceed the cap: from its Content-Length before a byte is
read, and while it streams when it has none (chunked), so no more than the cap is ever held. A
client that hangs up mid-body is a failure of its own, kept out of the error log.
`install_envelope_handlers` (envelope.py) answers both failures as envelopes: 413 with
`maxBytes`, 400 naming the field.
"""

from starlette.requests import ClientDisconnect, Request


class BodyTooLarge(Exception):
    """The body is over the cap (413)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"body over {max_bytes} bytes")
        self.max_bytes = max_bytes


class BodyUnreadable(Exception):
    """The body cannot be read: a Content-Length that is no byte count, or a client that
    disconnected before sending it all (400)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


async def read_capped_body(request: Request, max_bytes: int) -> bytes:
    """The body, or `BodyTooLarge` as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None and _declared_length(declared) > max_bytes:
        raise BodyTooLarge(max_bytes)
    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > max_bytes:
                raise BodyTooLarge(max_bytes)
            body += chunk
    except ClientDisconnect:
        # Nobody will read this answer; it keeps a client that hung up out of the error log.
        raise BodyUnreadable("body", "the client disconnected before sending it") from None
    return bytes(body)


def _declared_length(value: str) -> int:
    if not value.isdigit():
        raise BodyUnreadable("Content-Length", f"not a byte count: {value[:40]!r}")
    return int(value)
