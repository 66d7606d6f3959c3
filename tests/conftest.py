"""Fixtures every test package may use: moto's server over real HTTP, AWS env, ports, real vLLM."""

from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from devstack.local_llm import START_TIMEOUT_S
from devstack.processes import ManagedProcess, free_port, python_module
from devstack.queues import FeedbackQueues, create_feedback_queues
from llm_common.requests_store import create_request_table

from tests.support.vllm import RunningVllm, running_vllm

AWS_REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto server process for the session: SQS and S3 over HTTP, as a real client sees them."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        name="moto",
        argv=python_module("moto.server", "-H", "127.0.0.1", "-p", str(port)),
        log_path=tmp_path_factory.mktemp("moto") / "moto.log",
        ready_url=f"{endpoint}/moto-api/",
    ).start(timeout=30)
    yield endpoint
    process.stop()


@pytest.fixture(scope="session")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningVllm]:
    """Real vLLM on CPU serving the local model, started once for the session: a start costs
    1 to 2 minutes and 5.6 GB, so tests share one. Tests that use it are marked `slow` and `vllm`
    (below); it skips where vLLM is not installed, and fails instead under REQUIRE_VLLM=1 (CI)."""
    with running_vllm(tmp_path_factory.mktemp("vllm")) as server:
        yield server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "vllm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.vllm)
            item.add_marker(pytest.mark.slow)
            # The first such test also waits for vLLM's start, which may take START_TIMEOUT_S.
            timeout = float(item.config.getini("timeout") or 0)
            item.add_marker(pytest.mark.timeout(START_TIMEOUT_S + timeout))


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (in this process and in children started with os.environ) at moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return moto_endpoint


@pytest.fixture
def feedback_queues(aws_env: str, request: pytest.FixtureRequest) -> FeedbackQueues:
    """Fresh request/DLQ/result FIFO queues for one test (names unique per test)."""
    sqs = boto3.client("sqs", endpoint_url=aws_env, region_name=AWS_REGION)
    prefix = f"t{free_port()}-{abs(hash(request.node.nodeid)) % 10**8}"
    return create_feedback_queues(sqs, prefix=prefix, max_receive_count=3, visibility_timeout=30)


@pytest.fixture
def moto_reset(moto_endpoint: str) -> None:
    """Forget every queue and bucket moto holds (for tests that count what exists)."""
    httpx.post(f"{moto_endpoint}/moto-api/reset").raise_for_status()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def request_table(aws_env: str, request: pytest.FixtureRequest) -> str:
    """A fresh request-store table in moto for one test; returns its name."""
    name = f"requests-{free_port()}-{abs(hash(request.node.nodeid)) % 10**8}"
    create_request_table(boto3.client("dynamodb", region_name=AWS_REGION), name)
    return name
