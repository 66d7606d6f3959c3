"""The service over HTTP: the signed OpenAI webhook, job status, QA pairs, health."""

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest
from devstack.fakes.fake_batch_api import FakeBatchApi
from devstack.serving import BackgroundServer
from llm_common.webhooks import signature_headers
from qa_sync.app import create_app
from qa_sync.components import Components, build_components
from qa_sync.settings import QaSyncSettings
from standardwebhooks.webhooks import Webhook

from tests.support.qa_sync import WEBHOOK_SECRET, pairs_file
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def service(settings: QaSyncSettings, aws_env: str) -> Iterator[tuple[Components, httpx.Client]]:
    """The app on a real port; the poller waits an hour, so only webhooks trigger syncs."""
    components = build_components(settings.model_copy(update={"poll_interval_seconds": 3600}))
    with (
        BackgroundServer(create_app(components)) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        yield components, http
    components.close()


def batch_event(batch_id: str, kind: str = "batch.completed") -> bytes:
    event = {
        "id": f"evt_{batch_id}",
        "object": "event",
        "created_at": int(time.time()),
        "type": kind,
        "data": {"id": batch_id},
    }
    return json.dumps(event).encode()


def post_webhook(
    http: httpx.Client, body: bytes, webhook_id: str, secret: str = WEBHOOK_SECRET
) -> httpx.Response:
    headers = signature_headers(secret, webhook_id, body.decode())
    return http.post("/webhooks/openai", content=body, headers=headers)


def test_a_signed_completion_webhook_syncs_the_job(
    service: tuple[Components, httpx.Client], provider: FakeBatchApi
) -> None:
    qa, http = service
    output, _ = pairs_file(3)
    batch = provider.seed_batch(output)
    job = qa.registry.register(42, batch["id"])

    answer = post_webhook(http, batch_event(batch["id"]), "wh_1")

    assert answer.status_code == 200
    assert answer.json()["message"] == "accepted"
    wait_until(lambda: qa.registry.get(job.task_id).status == "completed", what="the sync")
    status = http.get(f"/jobs/{job.task_id}").json()["data"]
    assert (status["status"], status["generated_qa_pairs"]) == ("completed", 3)


def test_the_same_webhook_delivered_twice_is_processed_once(
    service: tuple[Components, httpx.Client], provider: FakeBatchApi
) -> None:
    qa, http = service
    output, _ = pairs_file(2)
    batch = provider.seed_batch(output)
    job = qa.registry.register(42, batch["id"])
    body = batch_event(batch["id"])

    first = post_webhook(http, body, "wh_dup")
    wait_until(lambda: qa.registry.get(job.task_id).status == "completed", what="the sync")
    second = post_webhook(http, body, "wh_dup")

    assert (first.json()["message"], second.json()["message"]) == ("accepted", "duplicate")
    assert second.status_code == 200
    time.sleep(0.3)  # give a wrongly scheduled second sync the chance to show itself
    assert provider.count("GET", f"/v1/batches/{batch['id']}") == 1
    assert qa.registry.get(job.task_id).sync_attempts == 1


@pytest.mark.parametrize(
    "tamper",
    ["wrong-secret", "stale", "altered-body", "no-signature"],
)
def test_a_webhook_that_fails_verification_gets_400_and_changes_nothing(
    tamper: str, service: tuple[Components, httpx.Client], provider: FakeBatchApi
) -> None:
    qa, http = service
    output, _ = pairs_file(1)
    batch = provider.seed_batch(output)
    job = qa.registry.register(42, batch["id"])
    body = batch_event(batch["id"])
    headers = signature_headers(WEBHOOK_SECRET, "wh_bad", body.decode())
    if tamper == "wrong-secret":
        headers = signature_headers(
            "whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==", "wh_bad", body.decode()
        )
    elif tamper == "stale":
        sent = datetime.now(UTC) - timedelta(minutes=6)
        signature = Webhook(WEBHOOK_SECRET).sign("wh_bad", sent, body.decode())
        headers = {
            "webhook-id": "wh_bad",
            "webhook-timestamp": str(int(sent.timestamp())),
            "webhook-signature": signature,
        }
    elif tamper == "altered-body":
        body = batch_event("batch_someone_else")
    else:
        del headers["webhook-signature"]

    answer = http.post("/webhooks/openai", content=body, headers=headers)

    assert answer.status_code == 400
    assert answer.json()["status"] == 400
    time.sleep(0.3)
    assert qa.registry.get(job.task_id).status == "pending"
    assert provider.count("GET", f"/v1/batches/{batch['id']}") == 0
    # Nothing was recorded either: the genuine delivery of that id is still taken.
    assert post_webhook(http, batch_event(batch["id"]), "wh_bad").json()["message"] == "accepted"


def test_events_other_than_batch_ones_are_acknowledged_and_ignored(
    service: tuple[Components, httpx.Client],
) -> None:
    _, http = service
    body = json.dumps(
        {
            "id": "evt_1",
            "object": "event",
            "created_at": 1,
            "type": "response.completed",
            "data": {"id": "resp_1"},
        }
    ).encode()

    answer = post_webhook(http, body, "wh_other")

    assert (answer.status_code, answer.json()["message"]) == (200, "ignored")


def test_without_a_webhook_secret_the_webhook_is_unavailable(
    settings: QaSyncSettings, aws_env: str
) -> None:
    components = build_components(settings.model_copy(update={"openai_webhook_secret": None}))
    try:
        with BackgroundServer(create_app(components, background=False)) as server:
            answer = httpx.post(f"{server.url}/webhooks/openai", content=b"{}")
    finally:
        components.close()
    assert answer.status_code == 503


def test_pairs_over_http_in_both_formats(
    service: tuple[Components, httpx.Client], provider: FakeBatchApi
) -> None:
    qa, http = service
    output, _ = pairs_file(3)
    job = qa.registry.register(42, provider.seed_batch(output)["id"])
    qa.syncer.sync(job)

    as_json = http.get(f"/jobs/{job.task_id}/qa-pairs")
    as_chat = http.get(f"/jobs/{job.task_id}/qa-pairs", params={"format": "chat-jsonl"})

    assert as_json.status_code == 200
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.headers["x-qa-source"] == "processed"
    assert [pair["custom_id"] for pair in as_json.json()["qa_pairs"]] == ["req-0", "req-1", "req-2"]
    assert as_chat.headers["content-type"] == "application/x-ndjson"
    messages = [json.loads(line)["messages"] for line in as_chat.text.splitlines()]
    assert [m[1]["content"] for m in messages] == ["질문 req-0?", "질문 req-1?", "질문 req-2?"]


def test_pairs_of_unknown_or_unfinished_jobs_are_refused_with_an_envelope(
    service: tuple[Components, httpx.Client], provider: FakeBatchApi
) -> None:
    qa, http = service
    running = qa.registry.register(1, provider.seed_batch(b"", status="in_progress")["id"])

    unknown = http.get("/jobs/qa_0_0/qa-pairs")
    unfinished = http.get(f"/jobs/{running.task_id}/qa-pairs")
    bad_format = http.get(f"/jobs/{running.task_id}/qa-pairs", params={"format": "csv"})

    assert (unknown.status_code, unknown.json()["status"]) == (404, 404)
    assert (unfinished.status_code, unfinished.json()["status"]) == (409, 409)
    assert bad_format.status_code == 422


def test_health_and_readiness(service: tuple[Components, httpx.Client]) -> None:
    _, http = service
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").json() == {"status": 200, "message": "ready", "data": None}


def test_not_ready_without_its_bucket(settings: QaSyncSettings, aws_env: str) -> None:
    components = build_components(settings.model_copy(update={"qa_bucket": "qa-no-such-bucket"}))
    try:
        with BackgroundServer(create_app(components, background=False)) as server:
            answer = httpx.get(f"{server.url}/readyz")
    finally:
        components.close()
    assert answer.status_code == 503
    assert answer.json()["message"].startswith("not ready")


def metric(text: str, name: str) -> float:
    """The value of one sample (`name` with its labels) in Prometheus' text format, 0 if absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_metrics_count_jobs_findings_and_repairs(
    settings: QaSyncSettings, aws_env: str, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    components = build_components(settings.model_copy(update={"poll_interval_seconds": 3600}))
    repaired = 'qa_sync_repairs_total{action="rebuilt_from_raw",object="processed"}'
    found = 'qa_sync_verification_failures_total{object="processed",problem="missing"}'
    try:
        output, _ = pairs_file(2)
        job = components.registry.register(1, provider.seed_batch(output)["id"])
        components.syncer.sync(job)
        with BackgroundServer(create_app(components)) as server:
            before = httpx.get(f"{server.url}/metrics").text
            s3.delete_object(
                Bucket=bucket, Key=str(components.registry.get(job.task_id).processed_key)
            )
            components.reconciler.run(repair=True)
            after = httpx.get(f"{server.url}/metrics").text
    finally:
        components.close()

    assert metric(after, repaired) == metric(before, repaired) + 1
    assert metric(after, found) == metric(before, found) + 1
    assert metric(after, 'qa_sync_jobs{status="completed"}') == 1
    assert metric(after, 'qa_sync_jobs{status="pending"}') == 0
