"""A vLLM-like server: continuous batching on a virtual GPU, for the tests and the burst bench.

The constant-latency fake (devstack.fakes.fake_llm) answers every call in the same time however
many it is given; a GPU does not. This one schedules like vLLM's engine:

- a scheduler loop where each step decodes one token for every running sequence; a step takes
  `a + b * running` seconds, plus `prefill_per_token_s` for each prompt token admitted in it;
- at most `max_num_seqs` sequences run at once (vLLM's `--max-num-seqs`, 256 by default) within a
  KV-cache budget in tokens; the rest wait (`vllm:num_requests_waiting`) in arrival order, or
  under `--scheduling-policy priority` lowest `priority` value first, as vLLM orders them;
- past `--max-num-queued-reqs` unfinished (waiting + running) requests, a new one gets vLLM's
  503 at once instead of a place in the queue;
- output lengths drawn from a normal distribution fitting the weekly feedback (mean 225, sd 37.5:
  95 % between 150 and 300 tokens), capped by `max_tokens` (finish_reason "length" when cut), or
  from the lengths an engine wrote (`--calibration`); the text one character a token, or the
  engine's characters per token (`--calibration`);
- a client that disconnects aborts its request, as vLLM does; the tokens generated for it so far
  count as wasted (`sim_wasted_tokens_total`, and /sim/stats);
- `/health`, `/v1/models`, `/v1/chat/completions` (no streaming) and `/metrics` with vLLM's own
  metric names and labels (`model_name`, `engine`), on the API port; `--api-key` (or
  VLLM_API_KEY) guards /v1/* as in vLLM. While the model loads the API port refuses
  connections, as vLLM's does (it listens only once the engine is up).

What vLLM itself does here is pinned by tests/conformance, run against both this simulator and
vLLM on CPU; its module docstring lists what had to change to match.

Calibration (`Calibration.published()`), for a 7B model on one H100:
- about 100 output tokens/s for a single stream and about 3,300 output tokens/s at high
  concurrency (LambdaLabsML/vllm-benchmark; vLLM blog "vLLM v0.6.0: 2.7x throughput
  improvement and 5x latency reduction", 2024-09-05). A single stream gives `a + b = 1/100 s`;
  a full batch of 256 gives 256 tokens per `256/3,300 s`, of which prefill takes its share;
- prefill at 20,000 prompt tokens/s: a 7B forward pass is about 2 * 7e9 FLOP per token, an
  H100's ~990 dense BF16 TFLOP/s allow ~70,000 tokens/s at full use; vLLM reaches well under
  half of that in mixed batches, so 20,000 is an assumption to revisit with a measurement;
- a KV cache of 400,000 tokens: 80 GB * 0.9 (`--gpu-memory-utilization`) minus ~15 GB of
  weights leaves ~57 GB, at 128 KiB per token for a 32-layer model with 8 KV heads of 128
  (Mistral-7B / Llama-3-8B in BF16). Admission reserves prompt + max_tokens, so nothing is ever
  preempted (vLLM would preempt and recompute instead); at the feedback's sizes 256 sequences
  need ~230,000 tokens, so `max_num_seqs` binds first, as on the real GPU.
From the same calibration, `Calibration.ideal_seconds` gives the capacity-bound drain time of a
set of requests: every step at a full batch, nothing waiting on the client.

Time: the engine keeps a virtual clock. A busy step advances it by the step's time and sleeps
that time ÷ `time_scale` of real time; an idle engine's clock follows real time * `time_scale`.
At `--time-scale 60` an hour of GPU work takes a minute; every time the API reports (latency,
load time) is virtual. A slow host makes the engine run slower in real time but never changes
what its virtual clock says a step cost.

Controls, on a separate control port so that they work while the API port is down:

    POST /sim/control  {"action": "stop"}            abort everything, close the API port
                                                     (connections refused)
                       {"action": "start", "load_s": 120}  listen again after load_s virtual
                                                     seconds (connections refused meanwhile)
                       {"action": "fail", "status": 503}   answer every completion with status
                       {"action": "heal"}            stop failing
    GET  /sim/stats    counters, the virtual clock, queue sizes, the ideal for the work done

    python -m devstack.fakes.vllm_sim [--host H] [--port P] --control-port C [--time-scale S]
        [--max-num-seqs N] [--seed N] [--model NAME] [--api-key KEY]
        [--max-num-queued-reqs N] [--scheduling-policy fcfs|priority]
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import socket
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, Field, ValidationError

from devstack.serving import listen_args

DEFAULT_MODEL = "sim-7b"
MAX_MODEL_LEN = 4096
"""Prompt + output a sequence may hold, as vLLM's --max-model-len; longer asks get a 400."""
IDLE_TICK_S = 0.02
"""Real seconds an idle engine waits before advancing its clock again."""
PUBLISHED_BATCH = 256
"""The batch at which the published plateau was measured (vLLM's default --max-num-seqs)."""
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


@dataclass(frozen=True)
class Calibration:
    """How long the virtual GPU takes; see the module docstring for the figures' sources."""

    step_base_s: float
    step_per_seq_s: float
    prefill_per_token_s: float
    max_num_seqs: int = 256
    kv_cache_tokens: int = 400_000

    @classmethod
    def published(
        cls,
        max_num_seqs: int = 256,
        single_stream_tokens_per_s: float = 100.0,
        plateau_tokens_per_s: float = 3_300.0,
        prefill_tokens_per_s: float = 20_000.0,
        mean_prompt_tokens: float = 450.0,
        mean_output_tokens: float = 225.0,
    ) -> "Calibration":
        """a and b solved from the two published decode rates (measured at vLLM's default batch
        of 256), prefill's share taken out; `max_num_seqs` only moves the cap."""
        batch = PUBLISHED_BATCH
        full_step = batch / plateau_tokens_per_s
        # At the plateau, batch / mean_output sequences finish (and are replaced) per step.
        prefill_share = batch / mean_output_tokens * mean_prompt_tokens / prefill_tokens_per_s
        single_step = 1 / single_stream_tokens_per_s
        per_seq = (full_step - prefill_share - single_step) / (batch - 1)
        return cls(
            step_base_s=single_step - per_seq,
            step_per_seq_s=per_seq,
            prefill_per_token_s=1 / prefill_tokens_per_s,
            max_num_seqs=max_num_seqs,
        )

    @classmethod
    def fitted(
        cls,
        step_seconds: Mapping[int, float],
        prefill_per_token_s: float,
        max_num_seqs: int,
    ) -> "Calibration":
        """a and b by least squares from step times measured at several batch sizes (n
        sequences decoding with `ignore_eos`: one step writes n tokens), prefill measured apart;
        the procedure is docs/benchmarks.md's "Calibrating the simulator"."""
        per_seq, base = statistics.linear_regression(
            list(step_seconds), list(step_seconds.values())
        )
        return cls(
            step_base_s=base,
            step_per_seq_s=per_seq,
            prefill_per_token_s=prefill_per_token_s,
            max_num_seqs=max_num_seqs,
        )

    def step_seconds(self, running: int, prefill_tokens: int) -> float:
        return (
            self.step_base_s
            + self.step_per_seq_s * running
            + self.prefill_per_token_s * prefill_tokens
        )

    def ideal_seconds(self, output_tokens: float, prompt_tokens: float, replicas: int = 1) -> float:
        """The least time `replicas` GPUs need for this work: every step a full batch."""
        full_steps = output_tokens / self.max_num_seqs
        busy = full_steps * self.step_seconds(self.max_num_seqs, 0)
        return (busy + prompt_tokens * self.prefill_per_token_s) / replicas


@dataclass(frozen=True)
class OutputLengths:
    """Feedback lengths in tokens: normal, mean 225, sd 37.5 (95 % in 150-300), at least 1;
    or drawn from `empirical`, lengths an engine measured (a base model stops where it stops:
    no normal law fits the CPU engine's, bench/calibrate.py)."""

    mean: float = 225.0
    sd: float = 37.5
    empirical: tuple[int, ...] = ()

    def draw(self, rng: random.Random) -> int:
        if self.empirical:
            return rng.choice(self.empirical)
        return max(1, round(rng.gauss(self.mean, self.sd)))


@dataclass(frozen=True)
class Fitted:
    """A calibration measured on an engine, as `python -m bench.calibrate` stores it (JSON)."""

    calibration: Calibration
    lengths: OutputLengths
    characters_per_token: float = 1.0
    """Characters of the engine's answers per output token: the simulator's text is as long as
    the engine's would be (the worker's content checks count characters)."""

    @classmethod
    def load(cls, path: Path, max_num_seqs: int) -> "Fitted":
        data = json.loads(path.read_text())
        law = data["law"]
        calibration = Calibration(
            step_base_s=law["step_base_s"],
            step_per_seq_s=law["step_per_seq_s"],
            prefill_per_token_s=law["prefill_per_token_s"],
            max_num_seqs=max_num_seqs,
        )
        lengths = OutputLengths(empirical=tuple(data["output_lengths"]))
        return cls(calibration, lengths, data["characters_per_token"])


class SchedulingPolicy(StrEnum):
    """vLLM's `--scheduling-policy`: the order in which waiting requests are admitted."""

    FCFS = "fcfs"
    """Arrival order; a request's `priority` is not consulted."""
    PRIORITY = "priority"
    """Lowest `priority` value first, then arrival order (vLLM's `RequestQueue` for it)."""


class Outcome(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    ABORTED = "aborted"


@dataclass
class Sequence:
    """One request inside the engine."""

    number: int
    prompt_tokens: int
    max_tokens: int
    wanted_tokens: int
    """What the model would write if nothing cut it (drawn from OutputLengths)."""
    arrived_s: float
    priority: int = 0
    generated: int = 0
    outcome: Outcome | None = None
    finished_s: float = 0.0

    @property
    def target_tokens(self) -> int:
        return min(self.wanted_tokens, self.max_tokens)

    @property
    def kv_reserve(self) -> int:
        return self.prompt_tokens + self.max_tokens


@dataclass
class Counters:
    """What the engine has done since it was made (survives stop/start, as a bench needs)."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    wasted_tokens: int = 0
    """Tokens generated for requests that were then aborted: GPU work thrown away."""
    useful_prompt_tokens: int = 0
    useful_output_tokens: int = 0
    """Prompt and output tokens of requests that completed: what the ideal is computed on."""
    success: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0})
    aborted: int = 0
    disconnected: int = 0
    """Aborts because the client went away (its timeout, mostly), not because of a stop."""
    rejected: int = 0
    """Completions answered with an error (503 while failing or loading)."""
    steps: int = 0
    busy_s: float = 0.0
    running_integral: float = 0.0
    """Σ running * step time: divided by busy_s, the mean batch while the GPU works."""


class Engine:
    """vLLM's scheduler on a virtual clock, without any I/O: each `step()` is one forward pass."""

    def __init__(
        self,
        calibration: Calibration,
        seed: int = 0,
        lengths: OutputLengths = OutputLengths(),
        policy: SchedulingPolicy = SchedulingPolicy.FCFS,
    ) -> None:
        self.calibration = calibration
        self.policy = policy
        self.now_s = 0.0
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.counters = Counters()
        self._rng = random.Random(seed)
        self._lengths = lengths
        self._numbers = 0
        self._kv_reserved = 0

    @property
    def kv_cache_usage(self) -> float:
        """Fraction of the KV cache in use, as vllm:kv_cache_usage_perc reports it (0-1)."""
        used = sum(s.prompt_tokens + s.generated for s in self.running)
        return used / self.calibration.kv_cache_tokens

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def unfinished(self) -> int:
        """Requests waiting or running: what `--max-num-queued-reqs` bounds."""
        return len(self.waiting) + len(self.running)

    def submit(
        self, prompt_tokens: int, max_tokens: int, priority: int = 0, ignore_eos: bool = False
    ) -> Sequence:
        """`ignore_eos`: vLLM's sampling parameter, the model writes until `max_tokens`."""
        self._numbers += 1
        seq = Sequence(
            number=self._numbers,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            wanted_tokens=max_tokens if ignore_eos else self._lengths.draw(self._rng),
            arrived_s=self.now_s,
            priority=priority,
        )
        self._enqueue(seq)
        return seq

    def _enqueue(self, seq: Sequence) -> None:
        """Behind every waiting request that goes first under the policy: all of them (FCFS),
        or those of a lower or equal `priority` value (priority; ties in arrival order)."""
        if self.policy is SchedulingPolicy.FCFS:
            self.waiting.append(seq)
            return
        behind = next(
            (i for i, other in enumerate(self.waiting) if other.priority > seq.priority),
            len(self.waiting),
        )
        self.waiting.insert(behind, seq)

    def abort(self, seq: Sequence) -> None:
        """The client went away: its tokens so far are wasted, its KV space freed."""
        if seq.outcome is not None:
            return
        if seq in self.running:
            self.running.remove(seq)
            self._kv_reserved -= seq.kv_reserve
        else:
            self.waiting.remove(seq)
        self.counters.wasted_tokens += seq.generated
        self.counters.aborted += 1
        seq.outcome = Outcome.ABORTED
        seq.finished_s = self.now_s

    def abort_all(self) -> list[Sequence]:
        everything = [*self.running, *self.waiting]
        for seq in everything:
            self.abort(seq)
        return everything

    def idle(self, seconds: float) -> None:
        self.now_s += seconds

    def step(self) -> tuple[float, list[Sequence]]:
        """Admit what fits, decode one token per running sequence; (step time, finished ones)."""
        admitted = self._admit()
        if not self.running:
            return 0.0, []
        prefill = sum(s.prompt_tokens for s in admitted)
        duration = self.calibration.step_seconds(len(self.running), prefill)
        self.now_s += duration
        counters = self.counters
        counters.steps += 1
        counters.busy_s += duration
        counters.running_integral += len(self.running) * duration
        counters.prompt_tokens += prefill
        counters.generation_tokens += len(self.running)
        finished = []
        for seq in self.running:
            seq.generated += 1
            if seq.generated >= seq.target_tokens:
                finished.append(seq)
        for seq in finished:
            self._finish(seq)
        return duration, finished

    def _admit(self) -> list[Sequence]:
        """In queue order: the head waits until it fits, and so does everything behind it."""
        admitted = []
        budget = self.calibration.kv_cache_tokens
        while self.waiting and len(self.running) < self.calibration.max_num_seqs:
            head = self.waiting[0]
            if self._kv_reserved + head.kv_reserve > budget:
                break
            self.waiting.popleft()
            self.running.append(head)
            self._kv_reserved += head.kv_reserve
            admitted.append(head)
        return admitted

    def _finish(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self._kv_reserved -= seq.kv_reserve
        seq.outcome = Outcome.LENGTH if seq.generated < seq.wanted_tokens else Outcome.STOP
        seq.finished_s = self.now_s
        self.counters.success[seq.outcome] += 1
        self.counters.useful_output_tokens += seq.generated
        self.counters.useful_prompt_tokens += seq.prompt_tokens


class ApiState(StrEnum):
    SERVING = "serving"
    LOADING = "loading"
    FAILING = "failing"
    STOPPED = "stopped"


class ChatMessage(BaseModel):
    role: str
    content: str | None = None


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    priority: int = 0
    """vLLM's extra field: consulted under `--scheduling-policy priority` only."""
    ignore_eos: bool = False
    """vLLM's extra field: write until `max_tokens` (finish_reason "length")."""


class Control(BaseModel):
    action: Literal["stop", "start", "fail", "heal"]
    load_s: float = Field(0.0, ge=0)
    status: int = Field(503, ge=400, le=599)


def prompt_tokens(messages: Iterable[ChatMessage]) -> int:
    """One token per character: Korean text runs about one token per syllable in 7B models'
    tokenizers, and the feedback prompt (300-600 tokens) is mostly Korean."""
    return max(1, sum(len(m.content or "") for m in messages))


def error(status: int, message: str, kind: str = "server_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


async def client_gone(request: Request) -> None:
    """Returns when the client disconnects (vLLM's `listen_for_disconnect`)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Simulator:
    """The engine, its scheduler loop, the API server (stoppable) and the control server."""

    def __init__(
        self,
        calibration: Calibration,
        api_socket: socket.socket,
        control_socket: socket.socket,
        time_scale: float = 1.0,
        seed: int = 0,
        model: str = DEFAULT_MODEL,
        api_key: str = "",
        max_num_queued_reqs: int | None = None,
        scheduling_policy: SchedulingPolicy = SchedulingPolicy.FCFS,
        lengths: OutputLengths = OutputLengths(),
        characters_per_token: float = 1.0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.engine = Engine(calibration, seed, lengths, scheduling_policy)
        self.max_num_queued_reqs = max_num_queued_reqs
        """vLLM's `--max-num-queued-reqs`: more unfinished requests than this get a 503."""
        self.time_scale = time_scale
        self.model = model
        self.state = ApiState.SERVING
        self.fail_status = 503
        self._characters_per_token = characters_per_token
        self._api_key = api_key
        self._api_address = api_socket.getsockname()
        self._api_socket: socket.socket | None = api_socket
        self._control_socket = control_socket
        self._api_server: uvicorn.Server | None = None
        self._api_task: asyncio.Task[None] | None = None
        self._loading: asyncio.Task[None] | None = None
        self._loaded_at_s = 0.0
        self._done: dict[int, asyncio.Future[Sequence]] = {}
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

    # The engine loop.

    async def run(self) -> None:
        control = uvicorn.Server(_config(self.control_app()))
        await asyncio.gather(
            control.serve(sockets=[self._control_socket]), self._scheduler(), self._start_api()
        )

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
            await asyncio.sleep(duration / self.time_scale)
            for seq in finished:
                latency = seq.finished_s - seq.arrived_s
                self._latency.labels(self.model, ENGINE_INDEX).observe(latency)
                for kind, tokens in (("prompt", seq.prompt_tokens), ("generation", seq.generated)):
                    self._request_tokens[kind].labels(self.model, ENGINE_INDEX).observe(tokens)
                self._settle(seq)

    def _settle(self, seq: Sequence) -> None:
        future = self._done.pop(seq.number, None)
        if future is not None and not future.done():
            future.set_result(seq)

    # Controls.

    async def control(self, change: Control) -> None:
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
        elif change.action == "fail":
            self.fail_status = change.status
            self.state = ApiState.FAILING
        else:
            self.state = ApiState.SERVING

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
            self._api_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._api_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._api_socket.bind(self._api_address)
        self._api_server = uvicorn.Server(_config(self.api_app()))
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
            "rejected": counters.rejected,
            "steps": counters.steps,
            "busy_s": counters.busy_s,
            "running_integral": counters.running_integral,
            "ideal_s": calibration.ideal_seconds(
                counters.useful_output_tokens, counters.useful_prompt_tokens
            ),
        }

    # The two HTTP surfaces.

    def api_app(self) -> FastAPI:
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
            return Response(status_code=200)

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            entry = {"id": self.model, "object": "model", "created": 0, "owned_by": "vllm"}
            return {"object": "list", "data": [entry]}

        @app.get("/metrics")
        async def metrics() -> PlainTextResponse:
            return PlainTextResponse(generate_latest(self._registry).decode())

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            return await self._complete(request)

        return app

    def control_app(self) -> FastAPI:
        app = FastAPI(title="vLLM simulator controls")

        @app.post("/sim/control")
        async def control(change: Control) -> dict[str, Any]:
            await self.control(change)
            return self.stats()

        @app.get("/sim/stats")
        async def stats() -> dict[str, Any]:
            return self.stats()

        return app

    async def _complete(self, request: Request) -> Response:
        if self.state is ApiState.FAILING:
            self.engine.counters.rejected += 1
            return error(self.fail_status, f"engine {self.state}")
        try:
            chat = ChatRequest.model_validate_json(await request.body())
        except ValidationError as invalid:
            return error(400, str(invalid), "invalid_request_error")
        if self._queue_full():
            self.engine.counters.rejected += 1
            return error(503, QUEUE_FULL, "Service Unavailable")
        if chat.stream:
            return error(400, "the simulator does not stream", "invalid_request_error")
        tokens = prompt_tokens(chat.messages)
        max_tokens = chat.max_tokens or MAX_MODEL_LEN - tokens
        if tokens + max_tokens > MAX_MODEL_LEN:
            return error(400, f"prompt + max_tokens over {MAX_MODEL_LEN}", "invalid_request_error")
        seq = self.engine.submit(tokens, max_tokens, chat.priority, chat.ignore_eos)
        future: asyncio.Future[Sequence] = asyncio.get_running_loop().create_future()
        self._done[seq.number] = future
        self._wake.set()
        gone = asyncio.create_task(client_gone(request))
        either: set[asyncio.Future[Any]] = {future, gone}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not future.done():
            self.engine.counters.disconnected += 1
            self.engine.abort(seq)
            self._done.pop(seq.number, None)
            return Response(status_code=499)
        if seq.outcome is Outcome.ABORTED:
            return error(503, "engine stopped")
        return JSONResponse(self._completion(chat.model, seq))

    def _queue_full(self) -> bool:
        """vLLM's admission check: one more request would exceed `--max-num-queued-reqs`."""
        limit = self.max_num_queued_reqs
        return limit is not None and self.engine.unfinished + 1 > limit

    def _completion(self, model: str, seq: Sequence) -> dict[str, Any]:
        # The text is as long as the engine's would be: its tokens x its characters per token.
        characters = max(1, round(seq.generated * self._characters_per_token))
        content = ("피드백" * (characters // 3 + 1))[:characters]
        return {
            "id": f"chatcmpl-sim-{seq.number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": str(seq.outcome),
                }
            ],
            "usage": {
                "prompt_tokens": seq.prompt_tokens,
                "completion_tokens": seq.generated,
                "total_tokens": seq.prompt_tokens + seq.generated,
            },
        }


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


def _config(app: FastAPI) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)


def bound_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class SimulatorThread:
    """The simulator on its own event loop thread, on free loopback ports: for tests."""

    def __init__(self, calibration: Calibration, time_scale: float = 1.0, **options: Any) -> None:
        self._api, self._control = bound_socket(), bound_socket()
        self.url = f"http://127.0.0.1:{self._api.getsockname()[1]}"
        self.control_url = f"http://127.0.0.1:{self._control.getsockname()[1]}"
        self._loop = asyncio.new_event_loop()
        self._options = {"calibration": calibration, "time_scale": time_scale, **options}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.simulator: Simulator | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self.simulator = Simulator(
            api_socket=self._api, control_socket=self._control, **self._options
        )
        with contextlib.suppress(RuntimeError):  # the loop was stopped from stop()
            self._loop.run_until_complete(self.simulator.run())

    def start(self) -> Self:
        self._thread.start()
        _wait_listening(self._control.getsockname())
        _wait_listening(self._api.getsockname())
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _wait_listening(address: tuple[str, int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.fakes.vllm_sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listen_args(parser)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY", ""))
    parser.add_argument("--max-num-queued-reqs", type=int, default=None)
    parser.add_argument("--scheduling-policy", type=SchedulingPolicy, default=SchedulingPolicy.FCFS)
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="a fit measured on an engine (python -m bench.calibrate); default: the published 7B",
    )
    args = parser.parse_args(argv)
    fitted = (
        Fitted.load(args.calibration, args.max_num_seqs)
        if args.calibration
        else Fitted(Calibration.published(max_num_seqs=args.max_num_seqs), OutputLengths())
    )
    simulator = Simulator(
        fitted.calibration,
        api_socket=bound_socket(args.host, args.port),
        control_socket=bound_socket("127.0.0.1", args.control_port),
        time_scale=args.time_scale,
        seed=args.seed,
        model=args.model,
        api_key=args.api_key,
        max_num_queued_reqs=args.max_num_queued_reqs,
        scheduling_policy=args.scheduling_policy,
        lengths=fitted.lengths,
        characters_per_token=fitted.characters_per_token,
    )
    asyncio.run(simulator.run())


if __name__ == "__main__":
    main()
