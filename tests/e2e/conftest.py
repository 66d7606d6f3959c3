"""The platform as real processes on free ports: moto, LLM, callback receiver, ingest, worker."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devstack.stack import Stack, StackConfig

from tests.support.factories import StartStack
from tests.support.stack import free_ports


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
