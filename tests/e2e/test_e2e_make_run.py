"""`make run`, `make demo`, Ctrl-C and a second `make run`, exactly as a developer uses them."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.support.fakes import simulated_llm
from tests.support.vllm import RunningVllm

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UP_LINE = "platform up in"


def _launch(cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devstack", "run"],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(stream: IO[str], marker: str, timeout: float) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not printed:\n{''.join(seen)}")


def _demo(cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "demo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _interrupt(run: subprocess.Popen[str]) -> None:
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=60) == 0


@pytest.fixture
def external_llm_url() -> Iterator[str]:
    with simulated_llm(model="external-model", latency_s=0.0) as server:
        yield server.base_url


def test_run_demo_interrupt_and_run_again(
    tmp_path: Path, external_llm_url: str, vllm: RunningVllm
) -> None:
    # First run: real vLLM with the local model. The session's, through LLM_BASE_URL: the one
    # `make run` starts by default is the same server (devstack.local_llm), and a second vLLM
    # beside the session's would cost another 5.6 GB.
    first = _launch(tmp_path, {"LLM_BASE_URL": vllm.base_url})
    try:
        assert first.stdout is not None
        _read_until(first.stdout, UP_LINE, timeout=120)
        printed = _demo(tmp_path)
        assert "202" in printed
        assert "signature verified" in printed
        assert '"content"' in printed
        # The QA half: a finished batch lands in S3 through qa-sync, the truncated line dropped.
        assert "status completed, 2 pairs" in printed
        assert "/qa_pairs/qa_7_" in printed
    finally:
        _interrupt(first)

    # Second run on the same ports, this time against an external OpenAI-compatible server.
    second = _launch(tmp_path, {"LLM_BASE_URL": external_llm_url, "LLM_MODEL": "external-model"})
    try:
        assert second.stdout is not None
        _read_until(second.stdout, UP_LINE, timeout=120)
        assert external_llm_url in _read_until(second.stdout, "LLM", timeout=5)
        printed = _demo(tmp_path)
        assert "signature verified" in printed
        assert "아침 6시 기상" in printed  # the fake echoes the prompt: it was the one asked
    finally:
        _interrupt(second)
