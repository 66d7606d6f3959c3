"""A streamed chat completion as vLLM 0.32 frames it: server-sent events, one JSON chunk each.

vLLM 0.32's `chat_completion_stream_generator` (its OpenAI server's chat completions, read in
the `.vllm` environment `make vllm` installs) writes, for one choice:

1. once the engine has the request's first output, a chunk whose delta is the role
   (`{"role": "assistant", "content": ""}`);
2. a chunk for every engine output after it, its delta the new text (one token per engine step,
   several when the client reads slower than the engine writes), the last one carrying the
   `finish_reason` beside its text;
3. with `stream_options: {"include_usage": true}`, a chunk without choices carrying `usage`;
4. `data: [DONE]`.

Each chunk is `data: <json>\\n\\n`, the JSON of vLLM's protocol classes dumped with
`exclude_unset` (so fields it sets to null, `logprobs`, `token_ids`, appear as null). An error
after the stream began is one `data: {"error": ...}` chunk before `[DONE]`.
"""

import json
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

DONE = "data: [DONE]\n\n"
ROLE = "assistant"


def event(data: dict[str, Any]) -> str:
    """One server-sent event, as vLLM writes them (compact JSON, non-ASCII kept)."""
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


@dataclass(frozen=True)
class Chunks:
    """The chunks of one streamed completion: they share its id, model and creation time."""

    id: str
    model: str
    created: int = field(default_factory=lambda: int(time.time()))

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        head = {"id": self.id, "object": "chat.completion.chunk", "created": self.created}
        return event({**head, "model": self.model, "choices": choices, **extra})

    def role(self) -> str:
        delta = {"role": ROLE, "content": ""}
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def content(self, text: str, finish_reason: str | None) -> str:
        """New text; the last chunk also says why the answer ended (`stop_reason` beside it)."""
        choice: dict[str, Any] = {"index": 0, "delta": {"content": text}, "logprobs": None}
        choice["finish_reason"] = finish_reason
        if finish_reason is not None:
            choice["stop_reason"] = None
        return self._chunk([{**choice, "token_ids": None}])

    def usage(self, prompt_tokens: int, completion_tokens: int) -> str:
        usage = {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
        }
        return self._chunk([], usage=usage)


def error_event(message: str, status: int) -> str:
    """vLLM's error inside a stream that has begun (its status line is long sent)."""
    error = {"message": message, "type": "InternalServerError", "param": None, "code": status}
    return event({"error": error})


class EventStream(StreamingResponse):
    """`text/event-stream` that closes its generator however the response ends.

    Starlette cancels the response when the client disconnects; a generator suspended at a
    `yield` is then only closed at garbage collection, and its `finally` (the abort) with it.
    Closing it here runs the abort at once, as vLLM aborts a stream whose client went away."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[str, None]) -> None:
        super().__init__(events)
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._events.aclose()
