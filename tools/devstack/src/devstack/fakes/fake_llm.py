"""An OpenAI-compatible chat server with controllable latency and faults.

For the worker's tests, `make run` without a real model, end-to-end tests and benchmarks. The
answer is deterministic and echoes the prompt's `- ...` lines (the challenge titles), so a test
can tell that its request reached the model.

    python -m devstack.fakes.fake_llm [--host H] [--port P] [--latency S] [--model NAME]

HOST, PORT, FAKE_LLM_LATENCY_S and FAKE_LLM_MODEL are read when no argument is given.

    POST /v1/chat/completions  the OpenAI chat API (no streaming)
    GET  /v1/models            the one model it serves
    POST /control              change faults; only the fields given change; answers the faults
                               now in force: {"latency_s": 1.0, "fail_next": 3,
                               now in force: {"latency_s": 1.0, "fail_next": 3,
                               "fail_every": 0, "fail_status": 503, "retry_after": "1",
                               "refuse": false,
                               "answers": [{"content": "...", "finish_reason": "length"}],
                               "drip_s": 0.5}
    GET  /stats                {"requests", "completions", "failures", "in_flight",
                               "max_in_flight"}
    GET  /requests             the last 100 request bodies, oldest first, each with the
                               `received_at` (Unix seconds) of its arrival: for `make bench`;
                               a dripped answer's also has `open_s`, the seconds from its
                               arrival until the client hung up (or the last byte)
    POST /reset                counters, recorded requests and faults back to their start values

`fail_next` answers the next N requests with `fail_status` (and `Retry-After` when set);
`fail_every` N answers every Nth request so (2: one replica of two behind a Service is sick);
`refuse` answers every request that way until turned off. A failure's body is an OpenAI error
object, also with `fail_status` 200 (a proxy or server that reports errors that way). `answers`
script the content (null for none) and finish reason of the next answers, in order: drafts the
worker's content checks must trim or refuse. Latency applies to the answers that succeed.
`drip_s` sends the answers that succeed, and the model list, one byte every `drip_s` seconds
after the status and headers (0: at once): an LLM whose every read arrives in time while the
answer never ends.
"""

import argparse
import asyncio
import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from devstack.fakes.drip import dripping
from devstack.serving import listen_args, serve

RECENT_REQUESTS = 100
DEFAULT_MODEL = "fake-llm"


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | str | None = None


class Answer(BaseModel):
    content: str | None
    finish_reason: str = "stop"


class Control(BaseModel):
    latency_s: float | None = Field(None, ge=0)
    fail_next: int | None = Field(None, ge=0)
    fail_every: int | None = Field(None, ge=0)
    fail_status: int | None = Field(None, ge=200, le=599)
    retry_after: str | None = None
    refuse: bool | None = None
    answers: list[Answer] | None = None
    drip_s: float | None = Field(None, ge=0)


@dataclass
class Faults:
    latency_s: float = 0.0
    fail_next: int = 0
    fail_every: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    refuse: bool = False
    answers: list[Answer] = field(default_factory=list)
    drip_s: float = 0.0


@dataclass
class Stats:
    requests: int = 0
    completions: int = 0
    failures: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


@dataclass
class FakeLlm:
    model: str
    start_latency_s: float
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_REQUESTS))

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.faults = Faults(latency_s=self.start_latency_s)
        self.stats = Stats()
        self.recent.clear()

    def take_fault(self) -> JSONResponse | None:
        """The failure this request gets, if any (counting down `fail_next`)."""
        every = self.faults.fail_every
        if not (self.faults.refuse or (every and self.stats.requests % every == 0)):
            if self.faults.fail_next == 0:
                return None
            self.faults.fail_next -= 1
        self.stats.failures += 1
        headers = {"retry-after": self.faults.retry_after} if self.faults.retry_after else None
        status = self.faults.fail_status
        body = {"error": {"message": f"fake failure {status}", "type": "server_error"}}
        return JSONResponse(body, status_code=status, headers=headers)

    def take_answer(self, messages: list[ChatMessage]) -> Answer:
        """The scripted answer next in line, else the echo."""
        if self.faults.answers:
            return self.faults.answers.pop(0)
        return Answer(content=feedback_text(messages))


def feedback_text(messages: list[ChatMessage]) -> str:
    """A Korean feedback that quotes the prompt's `- ...` lines: same prompt, same answer."""
    prompt = next(
        (m.content for m in reversed(messages) if m.role == "user" and isinstance(m.content, str)),
        "",
    )
    items = [line[2:].strip() for line in prompt.splitlines() if line.startswith("- ")]
    echoed = ", ".join(items) if items else " ".join(prompt.split())[:80]
    return f"이번 주도 정말 수고 많았어요! 😊 {echoed} 기록을 잘 봤어요. 다음 주도 응원할게요! 🎉"


def completion(request: ChatRequest, answer: Answer, number: int) -> dict[str, Any]:
    prompt_chars = sum(len(m.content) for m in request.messages if isinstance(m.content, str))
    completion_tokens = len(answer.content or "") // 2
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.content},
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_chars // 2,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_chars // 2 + completion_tokens,
        },
    }


def create_app(model: str = DEFAULT_MODEL, latency_s: float = 0.0) -> FastAPI:
    app = FastAPI(title="fake LLM (OpenAI-compatible)")
    llm = FakeLlm(model=model, start_latency_s=latency_s)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatRequest) -> Response | dict[str, Any]:
        llm.stats.requests += 1
        recorded = {**request.model_dump(exclude_none=True), "received_at": time.time()}
        llm.recent.append(recorded)
        if request.stream:
            error = {"message": "the fake LLM does not stream", "type": "invalid_request_error"}
            return JSONResponse({"error": error}, status_code=400)
        fault = llm.take_fault()
        if fault is not None:
            return fault
        llm.stats.in_flight += 1
        llm.stats.max_in_flight = max(llm.stats.max_in_flight, llm.stats.in_flight)
        try:
            await asyncio.sleep(llm.faults.latency_s)
        finally:
            llm.stats.in_flight -= 1
        answer = llm.take_answer(request.messages)
        llm.stats.completions += 1
        body = completion(request, answer, llm.stats.requests)
        if not llm.faults.drip_s:
            return body

        def ended() -> None:
            recorded["open_s"] = round(time.time() - recorded["received_at"], 3)

        return dripping(json.dumps(body).encode(), llm.faults.drip_s, ended)

    @app.get("/v1/models", response_model=None)
    async def models() -> Response | dict[str, Any]:
        entry = {"id": llm.model, "object": "model", "created": 0, "owned_by": "devstack"}
        body = {"object": "list", "data": [entry]}
        if not llm.faults.drip_s:
            return body
        return dripping(json.dumps(body).encode(), llm.faults.drip_s, lambda: None)

    @app.post("/control")
    async def control(change: Control) -> dict[str, Any]:
        for name in change.model_fields_set:
            setattr(llm.faults, name, getattr(change, name))
        return asdict(llm.faults)

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return asdict(llm.stats)

    @app.get("/requests")
    async def requests() -> list[dict[str, Any]]:
        return list(llm.recent)

    @app.post("/reset")
    async def reset() -> dict[str, Any]:
        llm.reset()
        return asdict(llm.faults)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.fakes.fake_llm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listen_args(parser)
    parser.add_argument(
        "--latency", type=float, default=float(os.environ.get("FAKE_LLM_LATENCY_S", "0"))
    )
    parser.add_argument("--model", default=os.environ.get("FAKE_LLM_MODEL", DEFAULT_MODEL))
    args = parser.parse_args(argv)
    serve(create_app(model=args.model, latency_s=args.latency), args.host, args.port)


if __name__ == "__main__":
    main()
