"""Dispatch only what the LLM can take: a health gate and an adaptive in-flight limit.

The GPU is the platform's whole cost and its throughput saturates: past vLLM's running batch
(`--max-num-seqs`, 256 by default) requests only wait inside vLLM, every one of them slower,
until the client's timeout throws the GPU's work away. And while vLLM restarts (minutes to load
a model) every call fails and every receive burns one of a message's maxReceiveCount.

The gate: a call that finds the LLM unreachable, overloaded (429/502/503/504) or timing out
closes it. Closed, the worker receives nothing, hands back at once what it holds ahead of the
LLM, and probes `/health` (vLLM's readiness; `/v1/models` for servers without one) with
backoff; the first answer opens it again. A worker also starts closed, so a pod that comes up
while the LLM is down never receives.

The limit: how many calls this worker may have in flight, between 1 and WORKER_CONCURRENCY.
It follows vLLM's own `vllm:num_requests_waiting`, read from the LLM's `/metrics` every
LLM_CAPACITY_POLL_SECONDS (a poll the LLM does not answer closes the gate too, so an idle
worker learns of an outage before it receives anything): while requests wait beyond a small
target, every worker scales its limit by (running + target) / (running + waiting), so all pods
together converge in one poll on what vLLM runs plus the target, whatever their number; while
none wait and the limit binds, it doubles (slow start, until the first wait) and then grows by
a tenth. A latency-based limiter (AIMD on latency, a gradient limiter) does not fit a batching
GPU: a call's time grows with the batch even when nothing waits (a decode step costs
a + b x running), so it would read a fuller batch as overload and keep the GPU below its
plateau. An LLM without vLLM's metrics starts at
WORKER_CONCURRENCY (today's worker) and is followed by timeouts alone: each halves the limit,
and it grows back by a tenth per poll while it binds.

LLM_GATE_ENABLED=false is today's worker: a fixed WORKER_CONCURRENCY and the openai client's
own retries (the burst bench's baseline).
"""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import httpx
from llm_common.telemetry import metrics
from prometheus_client.parser import text_string_to_metric_families

from feedback_worker.backoff import backoff_delay
from feedback_worker.slots import AdaptiveLimit

log = logging.getLogger(__name__)

PROBE_BASE_SECONDS = 0.5
PROBE_MAX_SECONDS = 30.0
GROWTH_AFTER_SLOW_START = 0.1
BINDING_FRACTION = 0.9
"""The limit grows only while the worker uses this much of it: more would be a number only."""


class GateReason(StrEnum):
    """Why the gate closed (also in the log line)."""

    UNREACHABLE = "unreachable"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    STARTING = "starting"


@dataclass(frozen=True)
class Capacity:
    """What vLLM reports: sequences in its running batch and requests waiting behind them."""

    running: float
    waiting: float


def next_limit(
    limit: int, in_flight: int, capacity: Capacity, target_waiting: int, slow_start: bool
) -> tuple[int, bool]:
    """The control law (see the module docstring); returns (limit, still in slow start)."""
    if capacity.waiting > target_waiting:
        share = (capacity.running + target_waiting) / (capacity.running + capacity.waiting)
        return max(1, math.floor(limit * share)), False
    if in_flight >= BINDING_FRACTION * limit:
        growth = limit if slow_start else max(1, math.ceil(limit * GROWTH_AFTER_SLOW_START))
        return limit + growth, slow_start
    return limit, slow_start


def read_capacity(text: str) -> Capacity | None:
    """vLLM's running and waiting gauges (summed over models), or None when it has none."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
            found[family.name] = sum(sample.value for sample in family.samples)
    if len(found) < 2:
        return None
    return Capacity(found["vllm:num_requests_running"], found["vllm:num_requests_waiting"])


class LlmGate:
    """Open or closed (see the module docstring); owns the probe and the capacity poll."""

    def __init__(
        self,
        limit: AdaptiveLimit,
        http: httpx.AsyncClient,
        server_url: str,
        poll_seconds: float,
        target_waiting: int,
        on_close: Callable[[str], None],
    ) -> None:
        self.limit = limit
        self._on_close = on_close
        self._http = http
        self._server_url = server_url.rstrip("/")
        self._poll_seconds = poll_seconds
        self._target_waiting = target_waiting
        self._open = asyncio.Event()
        self._closed_since = time.monotonic()
        self._probing: asyncio.Task[None] | None = None
        self._slow_start = True
        self._metrics_missing_logged = False
        self._never_read = True
        metrics.WORKER_LLM_GATE_OPEN.set(0)

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait_open(self) -> None:
        await self._open.wait()

    def start(self) -> None:
        """Closed until the first probe answers: a pod started during an outage receives
        nothing."""
        self._probing = asyncio.create_task(self._probe_until_up(), name="llm probe")

    def close(self, reason: GateReason, detail: str) -> None:
        if reason is GateReason.TIMEOUT:
            self.limit.set_limit(self.limit.limit // 2)
        if not self._open.is_set():
            return
        self._open.clear()
        self._closed_since = time.monotonic()
        metrics.WORKER_LLM_GATE_OPEN.set(0)
        log.warning(
            "LLM gate closed (%s: %s): no receives until %s answers; limit %d",
            reason,
            detail,
            self._server_url,
            self.limit.limit,
        )
        self._on_close(f"the LLM gate closed ({reason})")
        self._probing = asyncio.create_task(self._probe_until_up(), name="llm probe")

    async def stop(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probing

    async def _probe_until_up(self) -> None:
        attempt = 0
        while not await self._answers():
            attempt += 1
            await asyncio.sleep(backoff_delay(attempt, PROBE_BASE_SECONDS, PROBE_MAX_SECONDS))
        if self._never_read:
            self._never_read = False
            reading = None
            with contextlib.suppress(httpx.TransportError):
                reading = await self._capacity()
            if reading is None:
                self.limit.set_limit(self.limit.ceiling)
                self._slow_start = False
        closed_for = time.monotonic() - self._closed_since
        metrics.WORKER_LLM_GATE_CLOSED_SECONDS.inc(closed_for)
        metrics.WORKER_LLM_GATE_OPEN.set(1)
        self._open.set()
        log.info("LLM gate open: %s answers (closed %.1fs)", self._server_url, closed_for)

    async def _answers(self) -> bool:
        """vLLM's /health is 200 once the engine is up; without one, /v1/models must answer."""
        for path in ("/health", "/v1/models"):
            try:
                response = await self._http.get(f"{self._server_url}{path}")
            except httpx.HTTPError:
                return False
            if response.status_code != 404:
                return response.status_code == 200
        return False

    async def follow_capacity(self) -> None:
        """Every poll, move the limit after vLLM's waiting queue (runs until cancelled)."""
        while True:
            await asyncio.sleep(self._poll_seconds)
            if not self.is_open:
                continue
            try:
                reading = await self._capacity()
            except httpx.TransportError as error:
                self.close(GateReason.UNREACHABLE, f"{type(error).__name__} on /metrics")
                continue
            # Without metrics: as if nothing waited (timeouts alone bring the limit down).
            capacity = reading or Capacity(self.limit.in_flight, 0)
            limit, self._slow_start = next_limit(
                self.limit.limit,
                self.limit.in_flight,
                capacity,
                self._target_waiting,
                self._slow_start,
            )
            self.limit.set_limit(limit)

    async def _capacity(self) -> Capacity | None:
        """vLLM's reading; None without one; raises httpx.TransportError when unreachable."""
        response = await self._http.get(f"{self._server_url}/metrics")
        try:
            capacity = read_capacity(response.text) if response.status_code == 200 else None
        except ValueError:
            capacity = None
        if capacity is None and not self._metrics_missing_logged:
            self._metrics_missing_logged = True
            log.info(
                "no vLLM metrics at %s/metrics: timeouts alone move the limit", self._server_url
            )
        return capacity
