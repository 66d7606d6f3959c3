"""SQS unreachable at ingest: every request gets 503 with Retry-After, never a 202 (nothing is
accepted that the queue did not take); once SQS is back, requests are accepted again."""

import secrets
from collections import Counter
from collections.abc import Iterator

import boto3
import httpx
import pytest
from devstack.queues import FeedbackQueues
from feedback_ingest.app import create_app
from feedback_ingest.settings import IngestSettings

from tests.support.queues import queue_depth
from tests.support.records import weekly_record
from tests.support.reliability import Figures, TcpProxy

SCENARIO = "4. Queue outage at ingest"
REQUESTS = 20


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    proxy.up()
    yield proxy
    proxy.down()


async def test_sqs_unreachable_means_503_with_retry_after_never_202(
    proxy: TcpProxy,
    moto_endpoint: str,
    feedback_queues: FeedbackQueues,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    figures: Figures,
) -> None:
    """SQS cut (connections refused and reset) for 20 requests, then restored."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)  # ingest reaches moto only through it
    api_key = secrets.token_urlsafe(24)
    settings = IngestSettings(feedback_queue_url=feedback_queues.requests, ingest_api_keys=api_key)
    app = create_app(settings)
    # The counts below go to moto directly, never through the proxy.
    direct = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    headers = {"X-API-Key": api_key}

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://ingest", timeout=60) as client,
    ):
        first = await client.post(
            "/ai/feedback", json=weekly_record(50_000, "50000-before"), headers=headers
        )
        proxy.down()
        during = [
            await client.post(
                "/ai/feedback", json=weekly_record(50_001 + n, f"{50_001 + n}-out"), headers=headers
            )
            for n in range(REQUESTS)
        ]
        proxy.up()
        after = [
            await client.post(
                "/ai/feedback",
                json=weekly_record(50_100 + n, f"{50_100 + n}-back"),
                headers=headers,
            )
            for n in range(REQUESTS)
        ]

    statuses = Counter(answer.status_code for answer in during)
    figures["requests while SQS was unreachable"] = REQUESTS
    figures["answers"] = " ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
    figures["Retry-After"] = during[0].headers.get("retry-after")
    figures["accepted after SQS came back"] = sum(a.status_code == 202 for a in after)
    figures["messages on the queue"] = queue_depth(direct, feedback_queues.requests)
    leaks = figures.scan_for_secrets([caplog.text], [api_key])

    assert first.status_code == 202
    assert statuses == {503: REQUESTS}
    for answer in during:
        assert answer.json() == {
            "status": 503,
            "message": "queue unavailable, retry later",
            "data": None,
        }
        assert int(answer.headers["retry-after"]) > 0
    assert figures["accepted after SQS came back"] == REQUESTS
    # Only what got a 202 is on the queue: the first request and those after the outage.
    assert figures["messages on the queue"] == REQUESTS + 1
    assert not leaks
