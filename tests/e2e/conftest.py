"""The platform as real processes on free ports: moto, LLM, callback receiver, ingest, worker."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devstack.processes import free_port
from devstack.stack import Ports, Stack, StackConfig
from e2e_helpers import StartStack


def free_ports() -> Ports:
    return Ports(
        moto=free_port(), llm=free_port(), ingest=free_port(), callback=free_port(),
        qa_sync=free_port(),
    )  # fmt: skip


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[StartStack]:
    """Start a `Stack` with the given `StackConfig` fields; stopped after the test.

    Each test gets its own ports, run directory and emulator, so nothing leaks between tests.
    """
    started: list[Stack] = []

    def start(**config: Any) -> Stack:
        config.setdefault("run_dir", tmp_path / f"stack{len(started)}")
        config.setdefault("ports", free_ports())
        config.setdefault("with_qa_sync", False)
        stack = Stack(StackConfig(**config))
        started.append(stack)
        stack.start()
        return stack

    yield start
    for stack in started:
        stack.stop()
