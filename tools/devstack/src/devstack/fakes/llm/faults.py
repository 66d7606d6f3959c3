"""What a test makes the simulated LLM do besides computing: the one control model, the faults and
scripted answers in force, and the requests it recorded.

A fault answers a completion with `fail_status` before the engine sees it: `fail_next` the next
N, `fail_every` every Nth (2: one replica of two behind a Service is sick), `refuse` all until
turned off. The body is an OpenAI error object, also under status 200 (a proxy or server that
reports errors that way). `answers` script the content (null for none) and finish reason of the
next answers, in order: drafts the worker's content checks must trim or refuse.
"""

import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

RECENT_REQUESTS = 100


class Answer(BaseModel):
    content: str | None
    finish_reason: str = "stop"


class Control(BaseModel):
    """One change, `POST /sim/control`: only the fields given change (`latency_s: null` included:
    back to the batching law)."""

    action: Literal["stop", "start"] | None = None
    """stop: abort everything and close the API port; start: listen again after `load_s`."""
    load_s: float = Field(0.0, ge=0)
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
    """The faults and scripts in force; the fields `Control` may change, but `action`."""

    latency_s: float | None = None
    """Exact-latency mode: every completion takes this many virtual seconds, outside the
    engine (no batching law); None: the engine's batching decides."""
    fail_next: int = 0
    fail_every: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    refuse: bool = False
    answers: list[Answer] = field(default_factory=list)
    drip_s: float = 0.0
    """Send the answers that succeed, and the model list, one byte every `drip_s` seconds after
    the status and headers (0: at once): an LLM whose every read arrives in time while the answer
    never ends."""

    def change(self, control: Control) -> None:
        for name in control.model_fields_set - {"action", "load_s"}:
            setattr(self, name, getattr(control, name))

    def take_failure(self, number: int) -> JSONResponse | None:
        """The failure the `number`th request gets, if any (counting down `fail_next`)."""
        every = self.fail_every
        if not (self.refuse or (every and number % every == 0)):
            if self.fail_next == 0:
                return None
            self.fail_next -= 1
        headers = {"retry-after": self.retry_after} if self.retry_after else None
        body = {"error": {"message": f"fake failure {self.fail_status}", "type": "server_error"}}
        return JSONResponse(body, status_code=self.fail_status, headers=headers)

    def take_answer(self) -> Answer | None:
        """The scripted answer next in line, if any."""
        return self.answers.pop(0) if self.answers else None

    def shown(self) -> dict[str, Any]:
        """As JSON shows them."""
        return {**asdict(self), "answers": [answer.model_dump() for answer in self.answers]}


class RecentRequests:
    """The last 100 completion bodies, as sent, each with the `received_at` (Unix seconds) of its
    arrival; a dripped answer's also has `open_s`, the seconds from its arrival until the client
    hung up (or the last byte)."""

    def __init__(self) -> None:
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_REQUESTS)

    def record(self, body: dict[str, Any]) -> dict[str, Any]:
        recorded = {**body, "received_at": time.time()}
        self._recent.append(recorded)
        return recorded

    def listed(self) -> list[dict[str, Any]]:
        return list(self._recent)

    def clear(self) -> None:
        self._recent.clear()


def ended(recorded: dict[str, Any]) -> None:
    """Note on a recorded request how long its dripped answer stayed open."""
    recorded["open_s"] = round(time.time() - recorded["received_at"], 3)


def feedback_text(prompt: str) -> str:
    """The exact-latency answer: a Korean feedback that quotes the prompt's `- ...` lines (the
    challenge titles), so a test can tell that its request reached the model; same prompt, same
    answer."""
    items = [line[2:].strip() for line in prompt.splitlines() if line.startswith("- ")]
    echoed = ", ".join(items) if items else " ".join(prompt.split())[:80]
    return f"이번 주도 정말 수고 많았어요! 😊 {echoed} 기록을 잘 봤어요. 다음 주도 응원할게요! 🎉"
