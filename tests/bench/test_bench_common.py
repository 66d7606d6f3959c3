"""The bench's processes: one that never gets ready is stopped, not left behind (a vLLM that
missed its start-up window on a busy host kept 5.6 GB and a core until killed by hand)."""

import sys
from pathlib import Path

import pytest
from devstack.processes import ManagedProcess, ProcessFailedToStart, free_port

from bench.common import running


def test_a_process_not_ready_in_time_is_stopped_not_left_running(tmp_path: Path) -> None:
    never_ready = ManagedProcess(
        name="never-ready",
        argv=[sys.executable, "-c", "import time; time.sleep(120)"],
        log_path=tmp_path / "never-ready.log",
        ready_url=f"http://127.0.0.1:{free_port()}/health",
    )

    with pytest.raises(ProcessFailedToStart), running(never_ready, timeout=1):
        pass

    assert not never_ready.is_running()
