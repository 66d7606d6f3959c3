"""9. Mixed traffic: the weekly burst and interactive chat on one GPU (issue 26, item 3).

The backend's chatbot and the feedback worker share one vLLM. Here one simulated replica
(devstack.fakes.llm at the published 7B/H100 calibration, max_num_seqs 256) serves both:

- the feedback burst, as in section 5 (bench/burst.py): REQUESTS queued at once, drained by
  real worker processes (LLM gate on) through fauxqs (or moto) and the signed callback;
- an interactive load: a steady rate of short streamed chat requests (a Korean user message,
  `max_tokens` 64, `priority` 0: the backend's calls send none) from an asyncio client in this
  process, from the burst's start (its first worker past its start-up checks) to its last
  delivery. The same load runs first on its own, with the GPU otherwise idle: the baseline.

A row is (the simulator's `--scheduling-policy`, the workers' environment beside the burst's):
(a) FCFS, feedback without `priority` (vLLM's default, the worker before issue 26's item 1);
(b) `--scheduling-policy priority` with LLM_PRIORITY=10 (the chart's defaults). One line in
ROWS adds another (headroom in the gate, say).

Time: the simulator runs at `time_scale` virtual seconds per real second, and every figure in
seconds is virtual (real x time scale), as in section 5: a slow host counts against it.

Figures per row:
- TTFT: from sending an interactive request to its first content chunk; ITL: the mean gap
  between its content chunks (one chunk per engine step unless the client falls behind). Each
  at p50 and p99 over the requests sent during the burst, ÷ the same over the idle baseline.
- drain ÷ ideal: (drain - interactive GPU time) ÷ the feedback's ideal, where the drain runs
  from the burst's start to its last delivery; the feedback's ideal is
  `Calibration.ideal_seconds` (every step a full batch) of the tokens of the feedback requests
  the engine completed (its completed requests' prompt and output tokens, vLLM's
  `vllm:request_*_tokens`, less the interactive requests' own, from their usage chunks); the
  interactive GPU time is the same ideal of the interactive requests' tokens: what they took
  at the plateau. Issue 26's target, with priority and headroom: ≤ 1.1.
- interactive requests sent during the burst, and those that failed (an error status, a
  transport error, a stream without its finish_reason or [DONE]).
"""

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from devstack.fakes.llm import SchedulingPolicy

from bench.burst import (
    CALIBRATION,
    SQS_EMULATORS,
    BurstOptions,
    BurstSetup,
    Engines,
    Sampler,
    burst_worker_env,
    burst_workers,
    drain_deadline_s,
    queued_burst,
    simulated,
    simulators,
    wait_drained,
)
from bench.common import Emulator, Receiver, callback_receiver, percentile

REQUESTS = 3_000
"""A few thousand: the batch stays full for minutes, long enough for hundreds of interactive
requests beside it."""
TIME_SCALE = 0.5
"""Section 5's host keeps up with one replica at time scale 1 (14.6 requests/s); the streams
and their client cost the 2 cores more, and a late step here would count as GPU time."""
WORKERS = 2
INTERACTIVE_PER_S = 2.0
"""Interactive requests a virtual second: about 4 % of the plateau's tokens at 64 each."""
INTERACTIVE_MAX_TOKENS = 64
INTERACTIVE_MESSAGE = "이번 주 운동 루틴을 어떻게 바꾸면 좋을까? 짧게 알려줘."
"""A short user message, as the chatbot's free-text endpoint sends (30 characters: tokens)."""
INTERACTIVE_TIMEOUT_S = 120.0
"""Real seconds an interactive request may take before it counts as failed."""
IDLE_S = 60.0
"""Virtual seconds of the interactive load alone: the baseline (120 requests at 2 a second)."""


@dataclass(frozen=True)
class Row:
    """One configuration: how vLLM schedules, and what the workers are told beside the
    burst's own environment (bench/burst.py, burst_worker_env)."""

    name: str
    scheduling_policy: SchedulingPolicy
    worker_env: tuple[tuple[str, str], ...] = ()


ROWS = (
    Row("FCFS, feedback without priority", SchedulingPolicy.FCFS),
    Row("priority, LLM_PRIORITY 10", SchedulingPolicy.PRIORITY, (("LLM_PRIORITY", "10"),)),
)


@dataclass(frozen=True)
class MixedOptions:
    requests: int = REQUESTS
    time_scale: float = TIME_SCALE
    workers: int = WORKERS
    interactive_per_s: float = INTERACTIVE_PER_S
    idle_s: float = IDLE_S
    sqs: str = "fauxqs"
    rows: tuple[Row, ...] = ROWS


# The interactive load.


@dataclass
class Interactive:
    """One interactive request as its client saw it: real seconds from its sending."""

    first_token_s: float | None = None
    chunk_at_s: list[float] = field(default_factory=list)
    """When each content chunk arrived."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    done: bool = False
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error) or self.finish_reason is None or not self.done

    @property
    def inter_token_s(self) -> float | None:
        """The mean gap between content chunks (None with fewer than two)."""
        gaps = len(self.chunk_at_s) - 1
        return (self.chunk_at_s[-1] - self.chunk_at_s[0]) / gaps if gaps > 0 else None


def interactive_body(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": INTERACTIVE_MESSAGE}],
        "max_tokens": INTERACTIVE_MAX_TOKENS,
        "priority": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def one_interactive(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Interactive:
    """Send one streamed request and time its chunks (vLLM's framing, as the simulator's
    tools/devstack/src/devstack/fakes/llm/streaming.py describes it)."""
    seen = Interactive()
    sent = time.monotonic()
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                seen.error = f"status {response.status_code}"
                return seen
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    read_event(seen, line.removeprefix("data: "), time.monotonic() - sent)
    except httpx.HTTPError as failed:
        seen.error = repr(failed)
    return seen


def read_event(seen: Interactive, data: str, at_s: float) -> None:
    """One server-sent event into what the client saw."""
    if data == "[DONE]":
        seen.done = True
        return
    chunk = json.loads(data)
    if "error" in chunk:
        seen.error = str(chunk["error"].get("message"))
        return
    if chunk.get("usage") and not chunk["choices"]:
        seen.prompt_tokens = chunk["usage"]["prompt_tokens"]
        seen.completion_tokens = chunk["usage"]["completion_tokens"]
    for choice in chunk["choices"]:
        if "content" in choice["delta"] and "role" not in choice["delta"]:
            seen.chunk_at_s.append(at_s)
            if seen.first_token_s is None:
                seen.first_token_s = at_s
        seen.finish_reason = choice.get("finish_reason") or seen.finish_reason


class InteractiveLoad:
    """Interactive requests at a steady rate from a thread of its own (an asyncio client),
    while the bench's thread watches the burst; `stop()` ends the sending and waits for the
    requests in flight."""

    def __init__(self, url: str, model: str, per_real_s: float) -> None:
        self._url, self._body, self._every_s = url, interactive_body(model), 1 / per_real_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._crashed: BaseException | None = None
        self.seen: list[Interactive] = []

    def start(self) -> "InteractiveLoad":
        self._thread.start()
        return self

    def stop(self) -> list[Interactive]:
        """Stop sending, wait for the requests in flight; a fault of the client's own (not a
        request's failure, which it counts) is raised here rather than lost with its thread."""
        self._stopping.set()
        self._thread.join()
        if self._crashed is not None:
            raise RuntimeError("the interactive load's client failed") from self._crashed
        return self.seen

    def _run(self) -> None:
        try:
            asyncio.run(self._send())
        except BaseException as crashed:  # re-raised by stop, in the bench's thread
            self._crashed = crashed

    async def _send(self) -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        timeout = httpx.Timeout(INTERACTIVE_TIMEOUT_S)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            sending: list[asyncio.Task[Interactive]] = []
            due = time.monotonic()
            while not self._stopping.is_set():
                sending.append(asyncio.create_task(one_interactive(client, self._url, self._body)))
                due += self._every_s
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.seen = list(await asyncio.gather(*sending))


@contextmanager
def interactive_load(url: str, model: str, per_real_s: float) -> Iterator[InteractiveLoad]:
    load = InteractiveLoad(url, model, per_real_s).start()
    try:
        yield load
    finally:
        load.stop()


# One row.


@dataclass(frozen=True)
class Latencies:
    """TTFT and ITL of a set of interactive requests, virtual seconds."""

    requests: int
    failed: int
    ttft_p50_s: float
    ttft_p99_s: float
    itl_p50_s: float
    itl_p99_s: float
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def of(cls, seen: list[Interactive], scale: float) -> "Latencies":
        answered = [s for s in seen if not s.failed]
        ttft = [s.first_token_s * scale for s in answered if s.first_token_s is not None]
        itl = [s.inter_token_s * scale for s in answered if s.inter_token_s is not None]
        return cls(
            requests=len(seen),
            failed=len(seen) - len(answered),
            ttft_p50_s=quantile(ttft, 50),
            ttft_p99_s=quantile(ttft, 99),
            itl_p50_s=quantile(itl, 50),
            itl_p99_s=quantile(itl, 99),
            prompt_tokens=sum(s.prompt_tokens for s in answered),
            completion_tokens=sum(s.completion_tokens for s in answered),
        )


def quantile(values: list[float], q: float) -> float:
    return round(percentile(values, q), 4) if values else math.nan


@dataclass(frozen=True)
class MixedRun:
    row: str
    scheduling_policy: str
    worker_env: dict[str, str]
    measured: str
    requests: int
    delivered: int
    drain_s: float
    feedback_ideal_s: float
    interactive_gpu_s: float
    drain_ratio: float
    """(drain_s - interactive_gpu_s) ÷ feedback_ideal_s: the module docstring."""
    batch_fill: float
    idle: Latencies
    burst: Latencies
    ttft_p50_ratio: float
    ttft_p99_ratio: float
    itl_p50_ratio: float
    itl_p99_ratio: float


@dataclass(frozen=True)
class MixedTraffic:
    requests: int
    time_scale: float
    workers: int
    max_num_seqs: int
    interactive_per_s: float
    interactive_max_tokens: int
    sqs: str
    runs: list[MixedRun]


def run(options: MixedOptions, measured: str) -> MixedTraffic:
    setup = simulated(BurstOptions(requests=options.requests, time_scale=options.time_scale))
    runs = []
    with SQS_EMULATORS[options.sqs](f"{options.sqs}-mixed") as aws, callback_receiver() as callback:
        for number, row in enumerate(options.rows):
            policy = ("--scheduling-policy", str(row.scheduling_policy))
            with simulators(1, options.time_scale, *policy) as engines:
                label = (f"mixed-{number}", measured)
                runs.append(measure(aws, callback, engines, row, options, setup, label))
    return MixedTraffic(
        requests=options.requests,
        time_scale=options.time_scale,
        workers=options.workers,
        max_num_seqs=CALIBRATION.max_num_seqs,
        interactive_per_s=options.interactive_per_s,
        interactive_max_tokens=INTERACTIVE_MAX_TOKENS,
        sqs=options.sqs,
        runs=runs,
    )


def measure(
    aws: Emulator,
    callback: Receiver,
    engines: Engines,
    row: Row,
    options: MixedOptions,
    setup: BurstSetup,
    label: tuple[str, str],
) -> MixedRun:
    """The interactive load alone, then beside the burst, on one fresh replica; `label`: the
    run's name (queues, logs) and when it was measured."""
    name, measured = label
    scale = options.time_scale
    per_real_s = options.interactive_per_s * scale
    with interactive_load(engines.url, setup.model, per_real_s) as alone:
        time.sleep(options.idle_s / scale)
    idle = Latencies.of(alone.seen, scale)

    sqs, queues = queued_burst(aws, callback, name, options.requests)
    row_setup = replace(setup, worker_settings=row.worker_env)
    env = burst_worker_env(aws, callback, queues, engines.url, True, row_setup)
    start = engines.reading()
    with burst_workers(name, env, options.workers):
        started = time.time()
        samples = Sampler(engines.reading_if_up, options.requests, setup.max_num_seqs)
        with interactive_load(engines.url, setup.model, per_real_s) as beside:
            deadline_s = drain_deadline_s(row_setup, replicas=1)
            wait_drained(callback, sqs, queues, options.requests, samples, deadline_s)
    during = Latencies.of(beside.seen, scale)
    engine = engines.reading() - start
    deliveries = httpx.get(f"{callback.url}/deliveries", timeout=60).json()
    received = [d["received_at"] for d in deliveries if d["status"] == 200]
    drain_s = (max(received) - started) * scale if received else math.nan
    feedback_ideal = CALIBRATION.ideal_seconds(
        engine.completed_output_tokens - during.completion_tokens,
        engine.completed_prompt_tokens - during.prompt_tokens,
    )
    interactive_gpu = CALIBRATION.ideal_seconds(during.completion_tokens, during.prompt_tokens)
    return MixedRun(
        row=row.name,
        scheduling_policy=str(row.scheduling_policy),
        worker_env=dict(row.worker_env),
        measured=measured,
        requests=options.requests,
        delivered=len(received),
        drain_s=round(drain_s, 1),
        feedback_ideal_s=round(feedback_ideal, 1),
        interactive_gpu_s=round(interactive_gpu, 2),
        drain_ratio=ratio(drain_s - interactive_gpu, feedback_ideal),
        batch_fill=samples.batch_fill,
        idle=idle,
        burst=during,
        ttft_p50_ratio=ratio(during.ttft_p50_s, idle.ttft_p50_s),
        ttft_p99_ratio=ratio(during.ttft_p99_s, idle.ttft_p99_s),
        itl_p50_ratio=ratio(during.itl_p50_s, idle.itl_p50_s),
        itl_p99_ratio=ratio(during.itl_p99_s, idle.itl_p99_s),
    )


def ratio(part: float, whole: float) -> float:
    return round(part / whole, 3) if whole and not math.isnan(whole) else math.nan


# The table.


def table(m: dict[str, Any]) -> str:
    lines = [
        "### 9. Mixed traffic: the weekly burst beside interactive chat (bench/mixed_traffic.py)\n",
        f"{m['requests']:,} feedback requests at once, {m['workers']} worker processes "
        f"(LLM gate on), one simulated replica (max_num_seqs {m['max_num_seqs']}, time scale "
        f"{m['time_scale']}, SQS: {m['sqs']}); beside them {m['interactive_per_s']:g} "
        f"streamed chat requests a second (max_tokens {m['interactive_max_tokens']}, "
        "priority 0). Seconds are virtual; "
        "during the burst ÷ the same load with the GPU otherwise idle.",
        "",
        "| vLLM scheduling, worker | TTFT p50 / p99 ÷ idle | ITL p50 / p99 ÷ idle "
        "| TTFT p50 / p99 s (idle) | ITL p50 / p99 s (idle) | drain ÷ ideal | drain s "
        "| feedback ideal s | interactive GPU s | delivered | batch fill "
        "| interactive sent / failed | measured |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in m["runs"]:
        idle, burst = r["idle"], r["burst"]
        lines.append(
            f"| {r['row']} | {r['ttft_p50_ratio']:.1f} / {r['ttft_p99_ratio']:.1f} "
            f"| {r['itl_p50_ratio']:.1f} / {r['itl_p99_ratio']:.1f} "
            f"| {burst['ttft_p50_s']:.3f} / {burst['ttft_p99_s']:.3f} "
            f"({idle['ttft_p50_s']:.3f} / {idle['ttft_p99_s']:.3f}) "
            f"| {burst['itl_p50_s']:.3f} / {burst['itl_p99_s']:.3f} "
            f"({idle['itl_p50_s']:.3f} / {idle['itl_p99_s']:.3f}) "
            f"| {r['drain_ratio']:.2f} | {r['drain_s']:.0f} | {r['feedback_ideal_s']:.0f} "
            f"| {r['interactive_gpu_s']:.1f} | {r['delivered']}/{r['requests']} "
            f"| {r['batch_fill']:.2f} | {burst['requests']} / {burst['failed']} "
            f"| {r['measured']} |"
        )
    lines.append(
        "\nTargets (issue 26, with priority and headroom): TTFT during the burst ≤ 2 x idle at "
        "p50 and ≤ 3 x at p99; drain ≤ 1.1 x the feedback's ideal once the interactive GPU "
        "time is taken off.\n"
    )
    return "\n".join(lines)
