"""Clients for devstack's fake servers over HTTP (the fake LLM, the callback receiver), and a
delivery channel that answers from a script."""

import base64
from dataclasses import dataclass, field
from typing import Any

import httpx
from llm_common.contracts import FeedbackResult
from llm_common.telemetry.names import DeliveryOutcome

TEST_SECRET = "whsec_" + base64.b64encode(b"worker-tests-secret-0123456789ab").decode()
TEST_MODEL = "test-model"


@dataclass
class FakeLlm:
    """`devstack.fakes.fake_llm` over HTTP."""

    url: str

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def control(self, **faults: Any) -> None:
        httpx.post(f"{self.url}/control", json=faults).raise_for_status()

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = httpx.get(f"{self.url}/stats").json()
        return stats

    def requests(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = httpx.get(f"{self.url}/requests").json()
        return requests

    def reset(self) -> None:
        httpx.post(f"{self.url}/reset").raise_for_status()


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

    def bad_signatures(self) -> int:
        stats: dict[str, int] = httpx.get(f"{self.url}/stats").json()
        return stats["bad_signatures"]

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
