"""When SQS does not take the message the answer is 503 with Retry-After, never a 202."""

from typing import Any

import pytest
from devstack.processes import free_port
from feedback_ingest.app import create_app
from feedback_ingest.deps import get_queue
from feedback_ingest.settings import IngestSettings

from tests.support.ingest import Serve, assert_envelope


@pytest.fixture
def closed_port_endpoint(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQS down: the endpoint is a port nothing listens on."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")


@pytest.fixture
def missing_queue(aws_env: str) -> IngestSettings:
    return IngestSettings(
        feedback_queue_url=f"{aws_env}/123456789012/deleted-requests.fifo",
        queue_retry_after_seconds=17,
    )


async def test_an_unreachable_sqs_is_a_503_with_retry_after(
    serve: Serve, settings: IngestSettings, closed_port_endpoint: None, record: dict[str, Any]
) -> None:
    async with serve(settings) as client:
        response = await client.post("/ai/feedback", json=record)

    assert_envelope(response, 503)
    assert response.headers["retry-after"] == "5"


async def test_a_missing_queue_is_a_503_with_the_configured_retry_after(
    serve: Serve, missing_queue: IngestSettings, record: dict[str, Any]
) -> None:
    async with serve(missing_queue) as client:
        response = await client.post("/ai/feedback", json={**record, "requestId": "1024-r-1"})

    assert_envelope(response, 503)
    assert response.headers["retry-after"] == "17"


async def test_not_ready_while_sqs_is_unreachable(
    serve: Serve, settings: IngestSettings, closed_port_endpoint: None
) -> None:
    async with serve(settings) as client:
        response = await client.get("/readyz")

    assert assert_envelope(response, 503) == {"queue": "unreachable"}


async def test_not_ready_while_the_queue_is_missing(
    serve: Serve, missing_queue: IngestSettings
) -> None:
    async with serve(missing_queue) as client:
        assert_envelope(await client.get("/readyz"), 503)
        assert_envelope(await client.get("/healthz"), 200)


class _BrokenQueue:
    async def enqueue(self, job: object, resent: bool = False) -> str:
        raise RuntimeError("a bug in the queue code")


async def test_a_bug_is_a_logged_500_envelope_without_details(
    serve: Serve,
    settings: IngestSettings,
    record: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(settings)
    app.dependency_overrides[get_queue] = _BrokenQueue
    async with serve(app, raise_app_exceptions=False) as client:
        response = await client.post("/ai/feedback", json=record)

    assert_envelope(response, 500)
    assert "a bug in the queue code" not in response.text
    assert "a bug in the queue code" in caplog.text
