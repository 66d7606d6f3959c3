"""The simulator's HTTP side: the OpenAI-compatible API (stoppable, as vLLM's port), the control
API, the scheduler loop that drives the engine, and vLLM's metrics. A completion is answered
whole or streamed (streaming.py frames the stream as vLLM does)."""

import asyncio
import contextlib
import json
import secrets
import socket
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, Field, ValidationError

from devstack.fakes.drip import dripping
from devstack.fakes.llm.engine import (
    FEEDBACK_LENGTHS,
    Calibration,
    Counters,
    Engine,
    Outcome,
    OutputLengths,
    SchedulingPolicy,
    Sequence,
)
from devstack.fakes.llm.faults import Control, Faults, RecentRequests, ended, feedback_text
from devstack.fakes.llm.streaming import DONE, Chunks, EventStream, error_event
from devstack.serving import KEEP_ALIVE_S, loopback_socket, uvicorn_server

DEFAULT_MODEL = "sim-7b"
MAX_MODEL_LEN = 4096
"""Prompt + output a sequence may hold, as vLLM's --max-model-len; longer asks get a 400."""
IDLE_TICK_S = 0.02
"""Real seconds an idle engine waits before advancing its clock again."""
EXIT_POLL_S = 0.1
"""How often `serve` looks at `should_exit`, as uvicorn's own main loop does."""
ENGINE_INDEX = "0"
"""vLLM labels every engine metric `engine` (the data-parallel rank; "0" with one engine)."""
QUEUE_FULL = (
    "The engine is currently busy and cannot accept new requests. "
    "Please try again later or on a different instance."
)
"""vLLM's `QueueOverflowError` message, answered with 503 past `--max-num-queued-reqs`."""
LATENCY_BUCKETS = (1, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680)
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
"""vLLM's own buckets for `vllm:request_prompt_tokens` / `_generation_tokens` up to 4,096."""


class ApiState(StrEnum):
    SERVING = "serving"
    LOADING = "loading"
    STOPPED = "stopped"


class ChatMessage(BaseModel):
    role: str
    content: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False
    """A last chunk without choices carrying `usage` (vLLM's and OpenAI's `stream_options`)."""


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    priority: int = 0
    """vLLM's extra field: consulted under `--scheduling-policy priority` only."""
    ignore_eos: bool = False
    """vLLM's extra field: write until `max_tokens` (finish_reason "length")."""


@dataclass
class Traffic:
    """What the chat API answered since the last reset, in either mode."""

    requests: int = 0
    completions: int = 0
    """Answered 200 with a completion."""
    failures: int = 0
    """Answered with an error: an injected fault, or vLLM's 503 for a full queue."""
    in_flight: int = 0
    """Completions being computed (waiting, running, or the exact latency) right now."""
    max_in_flight: int = 0


@dataclass
class Stream:
    """A streamed sequence: after every step that wrote one of its tokens the scheduler counts
    it `written` and sets `progressed`; the response sends what is new since `sent_tokens`.

    The engine counts a step's tokens when the step begins, its time then passes (a sleep): the
    client may see them only once it has, so the stream reads `written`, not the engine's
    count."""

    seq: Sequence
    progressed: asyncio.Event = field(default_factory=asyncio.Event)
    written: int = 0
    sent_tokens: int = 0

    @property
    def ended(self) -> bool:
        """Every token of a finished sequence is written (an aborted one ends at once)."""
        return self.seq.outcome is not None and self.written == self.seq.generated


@dataclass(frozen=True)
class Written:
    """An answer's text and size, before a scripted answer may replace the text."""

    content: str | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def prompt_tokens(messages: Iterable[ChatMessage]) -> int:
    """One token per character: Korean text runs about one token per syllable in 7B models'
    tokenizers, and the feedback prompt (300-600 tokens) is mostly Korean."""
    return max(1, sum(len(m.content or "") for m in messages))


def last_user_text(messages: Iterable[ChatMessage]) -> str:
    return next((m.content or "" for m in reversed(list(messages)) if m.role == "user"), "")


def finish_reason(seq: Sequence) -> str | None:
    """Why a sequence ended, as the API says it ("stop", "length"); None while it runs."""
    return None if seq.outcome is None else str(seq.outcome)


def error(status: int, message: str, kind: str = "server_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


async def client_gone(request: Request) -> None:
    """Returns when the client disconnects (vLLM's `listen_for_disconnect`)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_gone(request: Request, work: Awaitable[Any]) -> bool:
    """Await `work` unless the client disconnects first (then `work` is cancelled): done?"""
    task, gone = asyncio.ensure_future(work), asyncio.create_task(client_gone(request))
    await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if task.done():
        return True
    task.cancel()
    return False


class Simulator:
    """The engine, its scheduler loop, the API server (stoppable) and the control API.

    Served as uvicorn serves (`serve(sockets)`, `started`, `should_exit`), so that
    `devstack.serving.BackgroundServer` runs it in tests: the API on the first socket, the
    control API also on a second when given (it answers while the API port is closed).
    """

    def __init__(
        self,
        calibration: Calibration,
        time_scale: float = 1.0,
        seed: int = 0,
        model: str = DEFAULT_MODEL,
        api_key: str = "",
        max_num_queued_reqs: int | None = None,
        scheduling_policy: SchedulingPolicy = SchedulingPolicy.FCFS,
        lengths: OutputLengths = FEEDBACK_LENGTHS,
        characters_per_token: float = 1.0,
        latency_s: float | None = None,
        keep_alive_s: int = KEEP_ALIVE_S,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.engine = Engine(calibration, seed, lengths, scheduling_policy)
        self.max_num_queued_reqs = max_num_queued_reqs
        """vLLM's `--max-num-queued-reqs`: more unfinished requests than this get a 503."""
        self.time_scale = time_scale
        self.model = model
        self.state = ApiState.SERVING
        self.started = False
        """True once the API and the control port listen (what BackgroundServer waits for, as
        on uvicorn's)."""
        self.should_exit = False
        """Set to end `serve`: the API and control servers close, the scheduler stops."""
        self._start_latency_s = latency_s
        self.faults = Faults(latency_s=latency_s)
        self.traffic = Traffic()
        self.recent = RecentRequests()
        self._characters_per_token = characters_per_token
        self._api_key = api_key
        self._keep_alive_s = keep_alive_s
        self._api_address: tuple[str, int] = ("127.0.0.1", 0)
        self._api_socket: socket.socket | None = None
        self._api_server: uvicorn.Server | None = None
        self._api_task: asyncio.Task[None] | None = None
        self._loading: asyncio.Task[None] | None = None
        self._loaded_at_s = 0.0
        self._done: dict[int, asyncio.Future[Sequence]] = {}
        """Whole answers, by sequence number: settled when the sequence ends."""
        self._streams: dict[int, Stream] = {}
        """Streamed answers, by sequence number: told after every step (one token each)."""
        self._wake = asyncio.Event()
        self._registry = CollectorRegistry()
        self._registry.register(_EngineCollector(self))
        self._latency = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Virtual seconds from arrival to the last token",
            ["model_name", "engine"],
            buckets=LATENCY_BUCKETS,
            registry=self._registry,
        )
        self._request_tokens = {
            kind: Histogram(
                f"vllm:request_{kind}_tokens",
                f"{kind.capitalize()} tokens of each finished request (aborted ones not counted)",
                ["model_name", "engine"],
                buckets=TOKEN_BUCKETS,
                registry=self._registry,
            )
            for kind in ("prompt", "generation")
        }

    # Serving, as uvicorn.Server does.

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Until `should_exit`: the API on sockets[0], the control API also on sockets[1]."""
        api, *control = sockets or [loopback_socket()]
        self._api_socket, self._api_address = api, api.getsockname()
        controls = [uvicorn_server(self.control_app(), self._keep_alive_s) for _ in control]
        serving = [
            asyncio.create_task(server.serve(sockets=[sock]))
            for server, sock in zip(controls, control, strict=True)
        ]
        scheduler = asyncio.create_task(self._scheduler())
        await self._start_api()
        # uvicorn offers no event for "listening": poll its flag, as BackgroundServer does.
        while not all(server.started for server in controls):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        self.started = True
        while not self.should_exit:  # noqa: ASYNC110 (uvicorn's flag, polled as uvicorn does)
            await asyncio.sleep(EXIT_POLL_S)
        self._cancel_loading()
        scheduler.cancel()
        await self._stop_api()
        for server in controls:
            server.should_exit = True
        await asyncio.gather(*serving)

    # The engine loop.

    async def _scheduler(self) -> None:
        while True:
            if not self.engine.has_work():
                started = time.monotonic()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_TICK_S)
                self.engine.idle((time.monotonic() - started) * self.time_scale)
                continue
            duration, finished = self.engine.step()
            # The step's tokens exist once its time has passed: streams see them only then.
            await asyncio.sleep(duration / self.time_scale)
            for seq in finished:
                latency = seq.finished_s - seq.arrived_s
                self._latency.labels(self.model, ENGINE_INDEX).observe(latency)
                for kind, tokens in (("prompt", seq.prompt_tokens), ("generation", seq.generated)):
                    self._request_tokens[kind].labels(self.model, ENGINE_INDEX).observe(tokens)
                self._settle(seq)
            self._tell_streams()

    def _settle(self, seq: Sequence) -> None:
        """The sequence ended (finished or aborted): its waiting client hears of it."""
        future = self._done.pop(seq.number, None)
        if future is not None and not future.done():
            future.set_result(seq)
        stream = self._streams.get(seq.number)
        if stream is not None:
            stream.progressed.set()

    def _tell_streams(self) -> None:
        """Every stream whose sequence wrote a token in the last step: a waiting one has none."""
        for stream in self._streams.values():
            if stream.seq.generated > stream.written:
                stream.written = stream.seq.generated
                stream.progressed.set()

    # Controls.

    async def control(self, change: Control) -> None:
        self.faults.change(change)
        if change.action == "stop":
            self._cancel_loading()
            for seq in self.engine.abort_all():
                self._settle(seq)
            await self._stop_api()
            self.state = ApiState.STOPPED
        elif change.action == "start":
            self._cancel_loading()
            self._loaded_at_s = self.engine.now_s + change.load_s
            self.state = ApiState.LOADING
            self._loading = asyncio.create_task(self._load_then_serve())
            if not change.load_s:
                await self._loading

    def reset(self) -> None:
        """Faults, traffic, recorded requests and the engine's counters back to their start
        values (what runs goes on running: `in_flight` stays)."""
        self.faults = Faults(latency_s=self._start_latency_s)
        self.traffic = Traffic(in_flight=self.traffic.in_flight)
        self.recent.clear()
        self.engine.counters = Counters()

    async def _load_then_serve(self) -> None:
        """vLLM binds its port before it loads the model but listens only once the engine is up:
        until then a client's connection is refused (`/health`, `/v1/models` and completions
        alike), then everything answers at once."""
        # The virtual clock offers no event: poll it, as _start_api polls uvicorn's flag.
        while self.engine.now_s < self._loaded_at_s:  # noqa: ASYNC110
            await asyncio.sleep(IDLE_TICK_S)
        await self._start_api()
        self.state = ApiState.SERVING

    def _cancel_loading(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
            self._loading = None

    async def _start_api(self) -> None:
        if self._api_task is not None:
            return
        if self._api_socket is None:
            self._api_socket = loopback_socket(*self._api_address)
        self._api_server = uvicorn_server(self.api_app(), self._keep_alive_s)
        self._api_task = asyncio.create_task(self._api_server.serve(sockets=[self._api_socket]))
        # uvicorn offers no event for "listening": poll its flag, as BackgroundServer does.
        while not self._api_server.started and not self._api_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def _stop_api(self) -> None:
        if self._api_server is None or self._api_task is None:
            return
        self._api_server.should_exit = True
        await self._api_task
        self._api_server = self._api_task = None
        if self._api_socket is not None:
            self._api_socket.close()
            self._api_socket = None

    def stats(self) -> dict[str, Any]:
        engine, counters = self.engine, self.engine.counters
        calibration = engine.calibration
        return {
            **asdict(self.traffic),
            "faults": self.faults.shown(),
            "state": self.state,
            "virtual_s": engine.now_s,
            "loading_until_s": self._loaded_at_s,
            "running": len(engine.running),
            "waiting": len(engine.waiting),
            "max_num_seqs": calibration.max_num_seqs,
            "prompt_tokens": counters.prompt_tokens,
            "generation_tokens": counters.generation_tokens,
            "wasted_tokens": counters.wasted_tokens,
            "useful_output_tokens": counters.useful_output_tokens,
            "useful_prompt_tokens": counters.useful_prompt_tokens,
            "success": dict(counters.success),
            "aborted": counters.aborted,
            "disconnected": counters.disconnected,
            "steps": counters.steps,
            "busy_s": counters.busy_s,
            "running_integral": counters.running_integral,
            "ideal_s": calibration.ideal_seconds(
                counters.useful_output_tokens, counters.useful_prompt_tokens
            ),
        }

    # The two HTTP surfaces.

    @property
    def exact(self) -> bool:
        """In exact-latency mode, an OpenAI-compatible server that is not vLLM (a proxy, a hosted
        API): no engine behind it, so neither vLLM's `/health` nor its `/metrics` (404)."""
        return self.faults.latency_s is not None

    def api_app(self) -> FastAPI:
        """The OpenAI-compatible API, and the control API too: one port is enough for a test
        that never closes it (the stack's fake); stop and start need the control port."""
        app = FastAPI(title="vLLM simulator (OpenAI-compatible)")

        @app.middleware("http")
        async def require_key(request: Request, call_next: Any) -> Response:
            if self._api_key and request.url.path.startswith("/v1/"):
                given = request.headers.get("authorization", "")
                if not secrets.compare_digest(given, f"Bearer {self._api_key}"):
                    return JSONResponse({"error": "Unauthorized"}, status_code=401)
            response: Response = await call_next(request)
            return response

        @app.get("/health")
        async def health() -> Response:
            # Answered only once loaded (the port is closed before): the engine is up.
            return Response(status_code=404 if self.exact else 200)

        @app.get("/v1/models")
        async def models() -> Response:
            entry = {"id": self.model, "object": "model", "created": 0, "owned_by": "vllm"}
            return self._maybe_dripped({"object": "list", "data": [entry]}, lambda: None)

        @app.get("/metrics", response_model=None)
        async def metrics() -> Response:
            if self.exact:
                return Response(status_code=404)
            return PlainTextResponse(generate_latest(self._registry).decode())

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            return await self._complete(request)

        app.include_router(self._control_routes(on_api_port=True))
        return app

    def control_app(self) -> FastAPI:
        app = FastAPI(title="vLLM simulator controls")
        app.include_router(self._control_routes(on_api_port=False))
        return app

    def _control_routes(self, on_api_port: bool) -> APIRouter:
        """The one control API: faults, modes, stop/start, stats, recorded requests, reset."""
        router = APIRouter(prefix="/sim")

        @router.post("/control", response_model=None)
        async def control(change: Control) -> Response | dict[str, Any]:
            if on_api_port and change.action is not None:
                # The answer would have to leave through the port the stop closes.
                return error(409, "stop and start go to the control port", "conflict")
            await self.control(change)
            return self.stats()

        @router.get("/stats")
        async def stats() -> dict[str, Any]:
            return self.stats()

        @router.get("/requests")
        async def requests() -> list[dict[str, Any]]:
            return self.recent.listed()

        @router.post("/reset")
        async def reset() -> dict[str, Any]:
            self.reset()
            return self.stats()

        return router

    # A completion.

    async def _complete(self, request: Request) -> Response:
        self.traffic.requests += 1
        body = await request.body()
        recorded = self.recent.record(_json_object(body))
        admitted = self._admit(body)
        if isinstance(admitted, Response):
            return admitted
        chat, tokens, max_tokens = admitted
        if chat.stream:
            return self._streamed(chat, tokens, max_tokens)
        self._count_in()
        try:
            written = await self._write(request, chat, tokens, max_tokens)
        finally:
            self.traffic.in_flight -= 1
        if isinstance(written, Response):
            return written
        self.traffic.completions += 1
        return self._maybe_dripped(self._completion(chat.model, written), lambda: ended(recorded))

    def _count_in(self) -> None:
        self.traffic.in_flight += 1
        self.traffic.max_in_flight = max(self.traffic.max_in_flight, self.traffic.in_flight)

    def _admit(self, body: bytes) -> tuple[ChatRequest, int, int] | Response:
        """The request with its prompt tokens and `max_tokens`, or the error it is answered:
        an injected fault first, then vLLM's own checks."""
        failure = self.faults.take_failure(self.traffic.requests)
        if failure is not None:
            self.traffic.failures += 1
            return failure
        try:
            chat = ChatRequest.model_validate_json(body)
        except ValidationError as invalid:
            return error(400, str(invalid), "invalid_request_error")
        if self._queue_full():
            self.traffic.failures += 1
            return error(503, QUEUE_FULL, "Service Unavailable")
        if chat.stream and self.exact:
            # No engine steps to stream from: an exact latency is one answer at its end.
            message = "exact-latency mode does not stream: set latency_s null for the engine"
            return error(400, message, "invalid_request_error")
        tokens = prompt_tokens(chat.messages)
        max_tokens = chat.max_tokens or MAX_MODEL_LEN - tokens
        if tokens + max_tokens > MAX_MODEL_LEN:
            return error(400, f"prompt + max_tokens over {MAX_MODEL_LEN}", "invalid_request_error")
        return chat, tokens, max_tokens

    async def _write(
        self, request: Request, chat: ChatRequest, tokens: int, max_tokens: int
    ) -> Written | Response:
        """The answer, in exact-latency mode or through the engine; a Response when there is
        none (the client went away: 499, or the engine stopped: 503)."""
        if self.faults.latency_s is not None:
            text = feedback_text(last_user_text(chat.messages))
            latency = asyncio.sleep(self.faults.latency_s / self.time_scale)
            if not await unless_gone(request, latency):
                self.engine.counters.disconnected += 1
                return Response(status_code=499)
            return Written(text, "stop", tokens, len(text))
        seq = self.engine.submit(tokens, max_tokens, chat.priority, chat.ignore_eos)
        future: asyncio.Future[Sequence] = asyncio.get_running_loop().create_future()
        self._done[seq.number] = future
        self._wake.set()
        if not await unless_gone(request, asyncio.shield(future)):
            self.engine.counters.disconnected += 1
            self.engine.abort(seq)
            self._done.pop(seq.number, None)
            return Response(status_code=499)
        if seq.outcome is Outcome.ABORTED:
            return error(503, "engine stopped")
        return Written(self._text(seq.generated), str(seq.outcome), tokens, seq.generated)

    def _text(self, generated: int) -> str:
        """As long as the engine's would be: its tokens x its characters per token. A longer
        answer's text begins with a shorter one's, so a stream's deltas add up to it."""
        characters = max(1, round(generated * self._characters_per_token))
        return ("피드백" * (characters // 3 + 1))[:characters]

    def _queue_full(self) -> bool:
        """vLLM's admission check: one more request would exceed `--max-num-queued-reqs`."""
        limit = self.max_num_queued_reqs
        return limit is not None and self.engine.unfinished + 1 > limit

    def _completion(self, model: str, written: Written) -> dict[str, Any]:
        answer = self.faults.take_answer()
        content = written.content if answer is None else answer.content
        finish_reason = written.finish_reason if answer is None else answer.finish_reason
        return {
            "id": f"chatcmpl-sim-{self.traffic.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": written.prompt_tokens,
                "completion_tokens": written.completion_tokens,
                "total_tokens": written.prompt_tokens + written.completion_tokens,
            },
        }

    def _maybe_dripped(self, body: dict[str, Any], on_end: Callable[[], None]) -> Response:
        """`body` at once, or dripped when `drip_s` is set (`on_end` once it ends)."""
        if not self.faults.drip_s:
            return JSONResponse(body)
        return dripping(json.dumps(body).encode(), self.faults.drip_s, on_end)

    # A streamed completion.

    def _streamed(self, chat: ChatRequest, tokens: int, max_tokens: int) -> Response:
        """Status and headers now; the sequence enters the engine as the body begins (vLLM adds
        the request when its stream is first read)."""
        usage = chat.stream_options is not None and chat.stream_options.include_usage
        chunks = Chunks(f"chatcmpl-sim-{self.traffic.requests}", chat.model)
        return EventStream(self._events(chat, tokens, max_tokens, chunks, usage))

    async def _events(
        self, chat: ChatRequest, tokens: int, max_tokens: int, chunks: Chunks, usage: bool
    ) -> AsyncGenerator[str, None]:
        """The role once the first token is out, then each step's new text (the last with its
        finish_reason), then usage and [DONE]. Closed early (the client went away:
        EventStream), the sequence is aborted as a disconnected whole answer's is; the engine
        stopping ends the stream with an error event."""
        seq = self.engine.submit(tokens, max_tokens, chat.priority, chat.ignore_eos)
        stream = self._streams[seq.number] = Stream(seq)
        self._wake.set()
        self._count_in()
        try:
            while True:
                await stream.progressed.wait()
                stream.progressed.clear()
                if seq.outcome is Outcome.ABORTED:
                    yield error_event("engine stopped", 503)
                    break
                # Read before yielding: the scheduler writes on while a chunk is being sent.
                written, ended = stream.written, stream.ended
                if written > stream.sent_tokens:
                    if not stream.sent_tokens:
                        yield chunks.role()
                    text = self._text_between(stream.sent_tokens, written)
                    stream.sent_tokens = written
                    yield chunks.content(text, finish_reason(seq) if ended else None)
                if ended:
                    self.traffic.completions += 1
                    if usage:
                        yield chunks.usage(seq.prompt_tokens, seq.generated)
                    break
            yield DONE
        finally:
            self._streams.pop(seq.number, None)
            self.traffic.in_flight -= 1
            if seq.outcome is None:
                self.engine.counters.disconnected += 1
                self.engine.abort(seq)

    def _text_between(self, sent: int, written: int) -> str:
        """The text of tokens `sent` + 1 to `written`: the whole answer's, cut where the last
        chunk ended."""
        before = self._text(sent) if sent else ""
        return self._text(written)[len(before) :]


def _json_object(body: bytes) -> dict[str, Any]:
    """The request body as recorded: its JSON object, or what was sent when it is none."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return {"unparsed": body.decode(errors="replace")}
    return parsed if isinstance(parsed, dict) else {"unparsed": parsed}


class _EngineCollector:
    """vLLM's gauges and counters, read from the engine at scrape time."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def collect(self) -> Iterator[Metric]:
        engine, model = self._sim.engine, self._sim.model
        counters = engine.counters
        labels = ["model_name", "engine"]
        gauges = (
            ("vllm:num_requests_running", "Sequences in the running batch", len(engine.running)),
            ("vllm:num_requests_waiting", "Requests waiting to be scheduled", len(engine.waiting)),
            ("vllm:kv_cache_usage_perc", "KV-cache usage (1 = full)", engine.kv_cache_usage),
        )
        for name, text, value in gauges:
            gauge = GaugeMetricFamily(name, text, labels=labels)
            gauge.add_metric([model, ENGINE_INDEX], value)
            yield gauge
        totals = (
            ("vllm:generation_tokens", "Generated tokens", counters.generation_tokens),
            ("vllm:prompt_tokens", "Prefilled prompt tokens", counters.prompt_tokens),
            ("sim_wasted_tokens", "Tokens generated for aborted requests", counters.wasted_tokens),
        )
        for name, text, value in totals:
            counter = CounterMetricFamily(name, text, labels=labels)
            counter.add_metric([model, ENGINE_INDEX], value)
            yield counter
        success = CounterMetricFamily(
            "vllm:request_success", "Finished requests", labels=[*labels, "finished_reason"]
        )
        for reason, count in counters.success.items():
            success.add_metric([model, ENGINE_INDEX, reason], count)
        yield success
