"""The LLM engines a gate scenario runs on, driven the same way: the vLLM simulator
(devstack.fakes.llm) and real vLLM on CPU (tests/support/vllm.py).

A scenario reads both through what vLLM itself serves (`/metrics`: the gauges the gate reads,
`vllm:request_success_total` for the completions) and stops and starts them: the simulator
through its control API, vLLM as production's pod is stopped, with SIGTERM, and started again
with its real start (a new process loading the model).
"""

import signal
import time
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from devstack.local_llm import START_TIMEOUT_S
from feedback_worker.llm_gate import Capacity, read_capacity

from bench.engine_metrics import engine_reading
from tests.support.fakes import SimulatedLlm
from tests.support.scrape import Scrape
from tests.support.vllm import RunningVllm

KILL_AFTER_S = 10.0
"""SIGKILL this long after SIGTERM, as Kubernetes does after a pod's grace period. vLLM 0.32
(--shutdown-timeout 0) stops its engine and closes its port at once on SIGTERM, but its HTTP
server waits for the calls in flight, which nothing will answer, until it is killed. The
chart's grace is LLM_TIMEOUT_SECONDS + a margin, so there the worker's timeout ends those calls
first; a short one here keeps the scenario short."""


class Engine(Protocol):
    """What a gate scenario does with an LLM engine."""

    url: str
    model: str

    def capacity(self) -> Capacity:
        """Running and waiting, as the gate reads them."""

    def completions(self) -> float:
        """Requests the engine completed (not aborted) since the scenario began, over every
        restart."""

    def stop(self) -> None:
        """Stop serving now, failing the calls in flight."""

    def start(self) -> None:
        """Serve again after a model load; returns once `/health` answers."""


def read_completions(url: str) -> float:
    """Requests the engine completed, not aborted (`engine_reading`, the bench's own reading)."""
    return engine_reading(httpx.get(f"{url}/metrics", timeout=10).text).completed


def read_engine_capacity(url: str) -> Capacity:
    reading = read_capacity(Scrape.of(f"{url}/metrics").text)
    assert reading is not None, f"{url}/metrics has no vllm:num_requests_running/_waiting"
    return reading


@dataclass
class SimulatedEngine:
    """The simulator: a stop aborts what runs and waits and closes its port; a start listens
    again after `load_s` virtual seconds. Its counters live on across a restart."""

    sim: SimulatedLlm
    model: str
    load_s: float

    @property
    def url(self) -> str:
        return self.sim.url

    def capacity(self) -> Capacity:
        return read_engine_capacity(self.url)

    def completions(self) -> float:
        return read_completions(self.url)

    def stop(self) -> None:
        self.sim.stop()

    def start(self) -> None:
        self.sim.start(self.load_s)
        wait_healthy(self.url)


@dataclass
class VllmEngine:
    """Real vLLM: SIGTERM stops it as Kubernetes stops its pod, and a new process loads the
    model again. Its counters start from zero in the new process, so the completions of the
    process before are kept: the last reading it answered before it exited."""

    server: RunningVllm
    completed_before: float = field(default=0.0)
    """Completions of the processes stopped so far."""

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def model(self) -> str:
        return self.server.model

    def capacity(self) -> Capacity:
        return read_engine_capacity(self.url)

    def completions(self) -> float:
        return self.completed_before + read_completions(self.url)

    def stop(self) -> None:
        process = self.server.process
        last = read_completions(self.url)
        process.send_signal(signal.SIGTERM)
        # Read on until it stops answering: what it completes while shutting down counts.
        while True:
            try:
                last = read_completions(self.url)
            except httpx.HTTPError:
                break
            time.sleep(0.05)
        self.completed_before += last
        process.stop(grace=KILL_AFTER_S)  # and what its session left: the engine processes

    def start(self) -> None:
        self.server.process.start(timeout=START_TIMEOUT_S)


def wait_healthy(url: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url}/health not 200 within {timeout:.0f}s")
