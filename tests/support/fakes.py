"""Clients for devstack's fake servers over HTTP (the simulated LLM, the callback receiver), the
simulated LLM on a test's thread, and a delivery channel that answers from a script."""

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from devstack.fakes.llm import Calibration, Simulator
from devstack.serving import BackgroundServer
from llm_common.contracts import FeedbackResult
from llm_common.telemetry.names import DeliveryOutcome

TEST_SECRET = "whsec_" + base64.b64encode(b"worker-tests-secret-0123456789ab").decode()
TEST_MODEL = "test-model"


@dataclass
class SimulatedLlm:
    """`devstack.fakes.llm` over HTTP: `url` its API, `control_url` where its control API
    answers while the API port is closed (the API's own, for one that is never stopped)."""

    url: str
    control_url: str = ""

    def __post_init__(self) -> None:
        self.control_url = self.control_url or self.url

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def port(self) -> int:
        """The API's port: for a proxy in front of it."""
        return int(self.url.rsplit(":", 1)[1])

    def control(self, **change: Any) -> None:
        """Faults, modes (`latency_s`), scripted answers; `action="stop"`/`"start"`."""
        answer = httpx.post(f"{self.control_url}/sim/control", json=change, timeout=30)
        answer.raise_for_status()

    def stop(self) -> None:
        """Abort what runs and waits; connections refused until `start`."""
        self.control(action="stop")

    def start(self, load_s: float = 0.0) -> None:
        """Listen again after `load_s` virtual seconds of model load."""
        self.control(action="start", load_s=load_s)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.control_url}/sim/stats").json()
        return stats

    def requests(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = httpx.get(f"{self.control_url}/sim/requests").json()
        return requests

    def reset(self) -> None:
        httpx.post(f"{self.control_url}/sim/reset").raise_for_status()


@contextmanager
def simulated_llm(calibration: Calibration | None = None, **options: Any) -> Iterator[SimulatedLlm]:
    """The simulator on a thread, on free loopback ports (API and control): by default the
    published 7B calibration; `options` as `Simulator` takes them (`latency_s=0.0`: the exact
    latency mode, `time_scale`, `model`, `keep_alive_s`...)."""
    simulator = Simulator(calibration or Calibration.published(), **options)
    with BackgroundServer(simulator, sockets=2) as server:
        yield SimulatedLlm(*server.urls)


@dataclass
class CallbackReceiver:
    """`devstack.fakes.callback_receiver` over HTTP."""

    url: str

    def script(
        self,
        status: int | None = None,
        times: int = 1,
        retry_after: str | None = None,
        delay_s: float = 0.0,
        drip_s: float = 0.0,
        path: str | None = None,
    ) -> None:
        script = {
            "status": status,
            "times": times,
            "retry_after": retry_after,
            "delay_s": delay_s,
            "drip_s": drip_s,
            "path": path,
        }
        httpx.post(f"{self.url}/control", json=script).raise_for_status()

    def deliveries(self) -> list[dict[str, Any]]:
        deliveries: list[dict[str, Any]] = httpx.get(f"{self.url}/deliveries").json()
        return deliveries

    def stats(self) -> dict[str, int]:
        """`deliveries`, `accepted` (webhook-ids stored once), `bad_signatures`."""
        stats: dict[str, int] = httpx.get(f"{self.url}/stats").json()
        return stats

    def bad_signatures(self) -> int:
        return self.stats()["bad_signatures"]

    def statuses(self) -> list[int]:
        return [delivery["status"] for delivery in self.deliveries()]

    def reset(self) -> None:
        httpx.post(f"{self.url}/reset").raise_for_status()


@dataclass
class ScriptedChannel:
    """A delivery channel whose sends answer in turn from `answers`, the last one repeated: an
    outcome, or an error to raise (feedback_worker.errors)."""

    name: str
    answers: list[DeliveryOutcome | Exception]
    sent: list[FeedbackResult] = field(default_factory=list)

    async def send(self, result: FeedbackResult) -> DeliveryOutcome:
        answer = self.answers[min(len(self.sent), len(self.answers) - 1)]
        self.sent.append(result)
        if isinstance(answer, Exception):
            raise answer
        return answer
