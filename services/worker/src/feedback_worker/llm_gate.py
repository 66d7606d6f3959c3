"""Dispatch only what the LLM can take: a health gate and an adaptive in-flight limit.

The GPU is the platform's whole cost and its throughput saturates: past vLLM's running batch
(`--max-num-seqs`, 256 by default) requests only wait inside vLLM, every one of them slower,
until the client's timeout throws the GPU's work away. And while vLLM restarts (minutes to load
a model) every call fails and every receive burns one of a message's maxReceiveCount.

The gate has three states:

    OPEN ──a call fails: unreachable, 429/500/502/503/504, a 200 that is no completion,
           timeout──▶ CLOSED
    CLOSED ──the probe answers (/health; /v1/models where there is none)──▶ TRIAL
    TRIAL ──the one trial call is answered──▶ OPEN
    TRIAL ──the trial call fails──▶ CLOSED (the probe's backoff goes on where it was)

CLOSED: nothing is received and nothing starts a call (`Bounds.close`): what the worker holds
waits for the gate, the messages whose call failed with it (handler.py), so the outage spends
none of their receives; the probe runs with backoff (0.5 s doubling to 5 s). TRIAL: one call,
by a message already held or else one received for it: a server whose probe answers while its
calls fail (a /v1/models that answers during a model load, an overloaded proxy) costs one call
per probe, not a call of every held message each time the gate opens. A worker starts OPEN: its
start-up check (feedback_worker/startup.py) waited for the LLM to list its model, as a probe
would. A 500 (vLLM's EngineDeadError) closes the gate like a 503. On SIGTERM vLLM 0.32 (its
default --shutdown-timeout 0) kills its engine and closes its port at once, but answers the
calls in flight nothing until it is killed: the capacity poll, refused, closes the gate, and
those calls fail later, by timeout or reset, into a closed gate (tests/worker/
test_worker_llm_gate.py, the restart on real vLLM).

The limit: how many calls this worker may have in flight, between 1 and WORKER_CONCURRENCY.
It follows vLLM's own `vllm:num_requests_waiting`, read from the LLM's `/metrics` every
LLM_CAPACITY_POLL_SECONDS (a poll the LLM does not answer closes the gate too, so an idle
worker learns of an outage before it receives anything): while requests wait beyond a small
target, every worker sets its limit to its calls in flight times (running + target) / (running +
waiting), so all pods together converge in one poll on what vLLM runs plus the target, whatever
their number, and stay there while the queue drains; while none wait and the limit binds, it
doubles (slow start: until the first wait, and again after every outage) and then grows by a
tenth. A latency-based limiter (AIMD on latency, a gradient limiter) does not fit a batching
GPU: a call's time grows with the batch even when nothing waits (a decode step costs a + b x
running), so it would read a fuller batch as overload and keep the GPU below its plateau. A
timeout or an overload answer halves the limit, and the gate reopens at that half (never below
LLM_START_LIMIT): with vLLM's metrics in slow start, which doubles it again only while nothing
waits (an overload that persists shows as waiting, and the share above takes over); an LLM
without them starts at WORKER_CONCURRENCY (today's worker) and is followed by those failures
alone, so after one it grows by a tenth a poll, never doubled straight back to what overloaded
it.

Behind a Service with several replicas each poll reads one replica; the calls are spread evenly
over them, so the target holds per replica. With LLM_REPLICAS each poll reads every replica and
the law runs over all the readings (`next_limit_over_replicas`; feedback_worker/replicas.py
balances the calls on them).

LLM_GATE_ENABLED=false is today's worker: a fixed WORKER_CONCURRENCY and the openai client's
own retries (the burst bench's baseline).
"""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import httpx2
from llm_common.telemetry import metrics
from prometheus_client.parser import text_string_to_metric_families

from feedback_worker.backoff import backoff_delay
from feedback_worker.errors import LlmUnavailable
from feedback_worker.slots import Bounds

if TYPE_CHECKING:
    from feedback_worker.replicas import Replicas

log = logging.getLogger(__name__)

PROBE_BASE_SECONDS = 0.5
PROBE_MAX_SECONDS = 5.0
"""A pod finds vLLM back up to this long after it serves, with the GPU idle meanwhile: at 30 s,
the 4 pods of the burst bench's restart found it 4.9, 16.8, 21.1 and 23.2 s after its model load
ended, and one pod alone would leave it idle 15 s on average. 20 pods probing every 5 s put 4
requests/s on vLLM's /health."""
GROWTH_AFTER_SLOW_START = 0.1
BINDING_FRACTION = 0.9
"""The limit grows only while the worker uses this much of it: more would be a number only."""


class GateState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    TRIAL = "trial"


class GateReason(StrEnum):
    """Why a failed call says the LLM cannot take calls now (also in the log line)."""

    UNREACHABLE = "unreachable"
    OVERLOADED = "overloaded"
    """429 or 503: too much work."""
    FAILING = "failing"
    """500, 502 or 504: the server or its engine is broken or going away."""
    MALFORMED = "malformed"
    """HTTP 200 with a body that is no chat completion (an error object, say)."""
    TIMEOUT = "timeout"


LIMIT_HALVING = frozenset({GateReason.OVERLOADED, GateReason.TIMEOUT})
"""Failures that say too many calls are in flight: the limit halves (while open)."""


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
        # The share scales the calls in flight, which the reading describes, not the limit: a
        # call cannot be taken back, so vLLM's queue drains only as its batch ends sequences
        # (a whole generation, ~13 s at 256 running), and scaling the limit again at every poll
        # meanwhile cut it to a quarter of the batch (2 replicas x 8 workers: drain 1.22 x ideal).
        share = (capacity.running + target_waiting) / (capacity.running + capacity.waiting)
        return max(1, math.floor(in_flight * share)), False
    if in_flight >= BINDING_FRACTION * limit:
        growth = limit if slow_start else max(1, math.ceil(limit * GROWTH_AFTER_SLOW_START))
        return limit + growth, slow_start
    return limit, slow_start


def next_limit_over_replicas(
    limit: int,
    in_flight: int,
    readings: Sequence[Capacity],
    target_waiting: int,
    slow_start: bool,
    batch: float = 0.0,
) -> tuple[int, bool]:
    """The law over every replica's reading, each call sent to the replica with the most room
    (feedback_worker/replicas.py): the readings summed are one replica's law with the target
    per replica. Besides, places free beside full batches (`free_places`, `batch` the size a
    replica's batch was seen to reach) are filled at once: every pod grows its limit by its
    share of them (its calls in flight ÷ all the readings hold), as the share rule cuts it by
    its share of what waits too much. A replica added mid-burst beside a full one is then filled
    at the next poll, where the law alone grew a tenth a poll and a pod's reading of one replica
    rarely showed the new one (90 % of its batch 21 s after its start in section 8, with the
    gate polling every second)."""
    total = Capacity(sum(r.running for r in readings), sum(r.waiting for r in readings))
    limit, slow_start = next_limit(
        limit, in_flight, total, target_waiting * len(readings), slow_start
    )
    held = total.running + total.waiting
    room = free_places(readings, target_waiting, batch)
    if room and held:
        limit = max(limit, math.ceil(in_flight * (held + room) / held))
    return limit, slow_start


def learnt_batch(readings: Sequence[Capacity], batch: float) -> float:
    """The largest batch a replica ran while requests waited there (so it ran all it could:
    vLLM's --max-num-seqs, or what its KV cache holds): vLLM does not publish it."""
    return max([batch, *(r.running for r in readings if r.waiting > 0)])


def free_places(readings: Sequence[Capacity], target_waiting: int, batch: float) -> float:
    """Places the replicas' batches and targets have beyond what they hold: 0 with one replica
    (its law is `next_limit`'s) or before any batch was seen full (its size is not known: slow
    start grows the limit meanwhile)."""
    if len(readings) < 2 or not batch:
        return 0.0
    return sum(max(0.0, batch + target_waiting - r.running - r.waiting) for r in readings)


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
    """The gate's state and the limit it sets on the runner's `Bounds` (module docstring)."""

    def __init__(
        self,
        bounds: Bounds,
        http: httpx2.AsyncClient,
        server_url: str,
        poll_seconds: float,
        target_waiting: int,
        start_limit: int,
        replicas: "Replicas | None" = None,
    ) -> None:
        self._bounds = bounds
        self._replicas = replicas
        self._http = http
        self._server_url = server_url.rstrip("/")
        self._poll_seconds = poll_seconds
        self._target_waiting = target_waiting
        self._start_limit = max(1, min(bounds.ceiling, start_limit))
        self._limit = self._start_limit
        """The limit while open; TRIAL sets the bounds to one call meanwhile, CLOSED to none."""
        self._slow_start = True
        self._batch = 0.0
        """The largest batch a replica was seen to run (`learnt_batch`)."""
        self._has_metrics: bool | None = None
        """Unknown until the first reading of /metrics."""
        self._failed_tries = 0
        """Probes and trial calls that failed since the gate was last open: the backoff."""
        self._receiving = asyncio.Event()
        self._closed_since = time.monotonic()
        self._probing: asyncio.Task[None] | None = None
        self.state = GateState.OPEN
        self._receiving.set()
        metrics.WORKER_LLM_GATE_OPEN.set(1)
        bounds.set_limit(self._limit)

    @property
    def receiving(self) -> bool:
        """Whether messages may be received now (OPEN or TRIAL)."""
        return self._receiving.is_set()

    async def wait_receiving(self) -> None:
        await self._receiving.wait()

    def call_answered(self) -> None:
        """An LLM call got an answer (any answer: the server is serving)."""
        if self.state is GateState.TRIAL:
            self._failed_tries = 0
            self._enter(GateState.OPEN)

    def call_failed(self, failure: LlmUnavailable) -> None:
        """An LLM call failed; one that says the LLM cannot take calls now closes the gate."""
        reason = failure.gate_reason
        if reason is None:
            self.call_answered()  # a 4xx for this call: the server answered
            return
        if reason in LIMIT_HALVING and self.state is GateState.OPEN:
            self._limit = max(1, self._limit // 2)
        if self.state is GateState.CLOSED:
            return
        if self.state is GateState.TRIAL:
            self._failed_tries += 1
        log.warning(
            "LLM gate closed (%s: %s): no receives until %s answers; limit %d",
            reason,
            failure,
            self._server_url,
            self._limit,
        )
        self._enter(GateState.CLOSED)

    async def follow_capacity(self) -> None:
        """Every LLM_CAPACITY_POLL_SECONDS, `poll` (runs until cancelled)."""
        while True:
            await asyncio.sleep(self._poll_seconds)
            await self.poll()

    async def poll(self) -> None:
        """One reading of vLLM's waiting queue: the limit follows it while open; an LLM that
        does not answer closes the gate (an idle worker learns of an outage before it receives
        anything)."""
        if self.state is GateState.CLOSED:
            return
        try:
            readings = await self._readings()
        except httpx2.TransportError as error:
            self.call_failed(
                LlmUnavailable(
                    f"{type(error).__name__} on /metrics", gate_reason=GateReason.UNREACHABLE
                )
            )
            return
        self._note_metrics(readings)
        if self.state is not GateState.OPEN:
            return  # a trial decides the limit's next step, or the gate closed meanwhile
        # Without metrics: as if nothing waited (timeouts and overloads bring the limit down).
        readings = readings or [Capacity(self._bounds.work.in_use, 0)]
        self._batch = learnt_batch(readings, self._batch)
        self._limit, self._slow_start = next_limit_over_replicas(
            self._limit,
            self._bounds.work.in_use,
            readings,
            self._target_waiting,
            self._slow_start,
            self._batch,
        )
        self._bounds.set_limit(self._limit)

    async def learn_metrics(self) -> None:
        """Before the first receive: whether the LLM serves vLLM's metrics (an LLM without
        them starts at WORKER_CONCURRENCY); an LLM that does not answer is learnt later."""
        with contextlib.suppress(httpx2.TransportError):
            self._note_metrics(await self._readings())

    def _note_metrics(self, readings: list[Capacity] | None) -> None:
        if self._has_metrics is not None:
            return
        self._has_metrics = readings is not None
        if readings is None:
            log.info(
                "no vLLM metrics at %s/metrics: the limit starts at WORKER_CONCURRENCY and "
                "timeouts and overloads alone move it",
                self._server_url,
            )
            self._limit, self._slow_start = self._bounds.ceiling, False
            if self.state is GateState.OPEN:
                self._bounds.set_limit(self._limit)

    async def stop(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probing

    def _enter(self, state: GateState) -> None:
        was, self.state = self.state, state
        metrics.WORKER_LLM_GATE_OPEN.set(0 if state is GateState.CLOSED else 1)
        if state is GateState.OPEN:
            # Back from an outage: what vLLM takes now is unknown (a restarted one is empty), and
            # the limit is this pod's last share of the calls: 4 pods closed at 1, 6, 35 and 93
            # in the burst bench's restart, and growing 1 by a tenth a poll took 18 s to reach 32
            # calls (1.13 x the ideal + outage + load). So slow start again.
            # Without vLLM's metrics nothing says the overload has passed: no slow start.
            self._limit = max(self._limit, self._start_limit)
            self._slow_start = self._has_metrics is not False
            self._bounds.set_limit(self._limit)
            self._receiving.set()
            closed_for = time.monotonic() - self._closed_since
            metrics.WORKER_LLM_GATE_CLOSED_SECONDS.inc(closed_for)
            log.info("LLM gate open: %s answers; limit %d", self._server_url, self._limit)
        elif state is GateState.TRIAL:
            self._bounds.set_limit(1, ahead=False)
            self._receiving.set()
        else:
            self._receiving.clear()
            self._bounds.close()
            if was is GateState.OPEN:
                self._closed_since = time.monotonic()
            self._probing = asyncio.get_running_loop().create_task(
                self._probe_until_up(), name="llm probe"
            )

    async def _probe_until_up(self) -> None:
        while True:
            await asyncio.sleep(
                backoff_delay(self._failed_tries + 1, PROBE_BASE_SECONDS, PROBE_MAX_SECONDS)
            )
            if await self._answers():
                break
            self._failed_tries += 1
        log.info("LLM probe answered: one trial call before the gate opens")
        self._enter(GateState.TRIAL)

    async def _answers(self) -> bool:
        """vLLM's /health is 200 once the engine is up; without one, /v1/models must answer."""
        for path in ("/health", "/v1/models"):
            try:
                response = await self._http.get(f"{self._server_url}{path}")
            except httpx2.HTTPError:
                return False
            if response.status_code != 404:
                return response.status_code == 200
        return False

    async def _readings(self) -> list[Capacity] | None:
        """vLLM's reading of each replica (LLM_REPLICAS), or of the one the Service's poll
        reaches; None without vLLM's metrics; raises httpx2.TransportError when unreachable."""
        if self._replicas is not None:
            return await self._replicas.refresh(self._http)
        reading = await fetch_capacity(self._http, f"{self._server_url}/metrics")
        return None if reading is None else [reading]


async def fetch_capacity(http: httpx2.AsyncClient, url: str | httpx2.URL) -> Capacity | None:
    """The reading of the vLLM /metrics at `url`; None without one; raises
    httpx2.TransportError when unreachable."""
    response = await http.get(url)
    try:
        return read_capacity(response.text) if response.status_code == 200 else None
    except ValueError:
        return None
