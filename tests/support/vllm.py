"""Real vLLM on CPU for tests: on a free port, stopped and cleaned up afterwards; its start-up
watched from outside (`StartUpWatch`, for the simulator too).

The same server `make run` starts (`devstack.local_llm.vllm_server`), so a suite that pins what
the worker relies on runs against the engine production deploys, not a simulation of it. One
start costs 1 to 2 minutes and 5.6 GB of memory: the root conftest.py starts one for the session
(fixture `vllm`); a suite that needs other engine flags starts its own with `running_vllm`.
"""

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from devstack.local_llm import START_TIMEOUT_S, vllm_python, vllm_server
from devstack.local_model import MODEL_ALIAS, is_built, model_dir
from devstack.processes import ManagedProcess, free_port

REFUSED = "refused"
"""StartUpWatch's record of a connection refused (no status code)."""
TIMED_OUT = "timed out"
"""StartUpWatch's record of a server that accepted the connection but did not answer."""


@dataclass(frozen=True)
class RunningVllm:
    url: str
    """http://127.0.0.1:PORT: `/health`, `/metrics`, `/v1/...`."""
    model: str
    process: ManagedProcess
    """To stop it, signal it or start it again (a gate test's restart)."""

    @property
    def base_url(self) -> str:
        """What the worker's `LLM_BASE_URL` takes."""
        return f"{self.url}/v1"


def require_vllm() -> None:
    """Skip where vLLM or its model is not installed (`make vllm`); fail under REQUIRE_VLLM=1,
    which CI sets, so a missing install step there cannot pass as a skip."""
    if vllm_python().exists() and is_built(model_dir()):
        return
    reason = f"vLLM is not installed ({vllm_python()}, {model_dir()}): run `make vllm`"
    if os.environ.get("REQUIRE_VLLM") == "1":
        pytest.fail(f"REQUIRE_VLLM=1 and {reason}")
    pytest.skip(reason)


@contextmanager
def running_vllm(log_dir: Path, *extra_args: str, port: int | None = None) -> Iterator[RunningVllm]:
    """vLLM serving the local model, ready (`/health` 200) until the block ends; `extra_args` go
    to vLLM (`--max-num-seqs 4`, say). `port` chosen beforehand lets a test watch the start-up."""
    require_vllm()
    port = port or free_port()
    process = vllm_server(port, log_dir / f"vllm-{port}.log", *extra_args)
    try:
        process.start(timeout=START_TIMEOUT_S)
        yield RunningVllm(url=f"http://127.0.0.1:{port}", model=MODEL_ALIAS, process=process)
    finally:
        process.stop()


class StartUpWatch:
    """Polls `/health` and `/v1/models` from a thread until `/health` answers 200, as the
    gate's probe does, recording each answer: a status code, REFUSED or TIMED_OUT."""

    PATHS = ("/health", "/v1/models")

    def __init__(self, url: str) -> None:
        self._url = url
        self.answers: dict[str, set[str]] = {path: set() for path in self.PATHS}
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> "StartUpWatch":
        self._thread.start()
        return self

    def seen(self) -> dict[str, set[str]]:
        """The answers, once `/health` has answered 200."""
        self._thread.join(timeout=START_TIMEOUT_S)
        return self.answers

    def _watch(self) -> None:
        while True:
            # /v1/models first: its answer counts only if /health, asked after it, is not up.
            models, health = self._answer("/v1/models"), self._answer("/health")
            if health == "200":
                return
            self.answers["/health"].add(health)
            self.answers["/v1/models"].add(models)
            time.sleep(0.1)

    def _answer(self, path: str) -> str:
        try:
            return str(httpx.get(f"{self._url}{path}", timeout=5).status_code)
        except httpx.ConnectError:
            return REFUSED
        except httpx.TimeoutException:
            return TIMED_OUT
