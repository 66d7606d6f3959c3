"""The service over HTTP: the signed OpenAI webhook, job status, QA pairs, health."""

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest
from devstack.fakes.fake_batch_api import FakeBatchApi
from devstack.serving import BackgroundServer
from fastapi.testclient import TestClient
from llm_common.webhooks import signature_headers
from pydantic import SecretStr
from qa_sync.app import create_app
from qa_sync.components import Components, build_components
from qa_sync.settings import QaSyncSettings
from standardwebhooks.webhooks import Webhook

from tests.support.qa_sync import API_KEY, WEBHOOK_SECRET, pairs_file
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def service(settings: QaSyncSettings, aws_env: str) -> Iterator[tuple[Components, httpx.Client]]:
    """The app on a real port; the poller waits an hour, so only webhooks trigger syncs."""
    components = build_components(settings.model_copy(update={"poll_interval_seconds": 3600}))
    with (
        BackgroundServer(create_app(components)) as server,
        httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}) as http,
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
    job = qa.registry.register("42", batch["id"])

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
    job = qa.registry.register("42", batch["id"])
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
    job = qa.registry.register("42", batch["id"])
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
    job = qa.registry.register("42", provider.seed_batch(output)["id"])
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
    running = qa.registry.register("1", provider.seed_batch(b"", status="in_progress")["id"])

    unknown = http.get("/jobs/qa_0_0/qa-pairs")
    unfinished = http.get(f"/jobs/{running.task_id}/qa-pairs")
    bad_format = http.get(f"/jobs/{running.task_id}/qa-pairs", params={"format": "csv"})

    assert (unknown.status_code, unknown.json()["status"]) == (404, 404)
    assert (unfinished.status_code, unfinished.json()["status"]) == (202, 202)
    assert (bad_format.status_code, bad_format.json()["status"]) == (400, 400)


def test_pairs_of_a_pending_job_are_synced_in_the_background_not_in_the_request(
    service: tuple[Components, httpx.Client], provider: FakeBatchApi
) -> None:
    qa, http = service
    output, _ = pairs_file(2)
    job = qa.registry.register("1", provider.seed_batch(output)["id"])  # no webhook, no poll yet

    first = http.get(f"/jobs/{job.task_id}/qa-pairs")

    assert first.status_code == 202
    assert first.json()["data"] == {"task_id": job.task_id}
    assert "retry-after" in first.headers
    wait_until(lambda: qa.registry.get(job.task_id).status == "completed", what="the sync")
    again = http.get(f"/jobs/{job.task_id}/qa-pairs")
    assert (again.status_code, len(again.json()["qa_pairs"])) == (200, 2)


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
    assert answer.json()["message"] == (
        "not ready: bucket 'qa-no-such-bucket' (QA_BUCKET) does not exist: create it, with the "
        "lifecycle rule in k8s/cluster, before starting qa-sync"
    )


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
        job = components.registry.register("1", provider.seed_batch(output)["id"])
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


UUID_INFLUENCER = "8c1f2d4e-1b2a-4c3d-9e8f-0a1b2c3d4e5f"


def test_a_job_of_a_uuid_influencer_is_shown_and_stored_under_its_id(
    service: tuple[Components, httpx.Client], provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    qa, http = service
    output, _ = pairs_file(2)
    job = qa.registry.register(UUID_INFLUENCER, provider.seed_batch(output)["id"])
    qa.syncer.sync(job)

    answer = http.get(f"/jobs/{job.task_id}")

    assert answer.status_code == 200
    assert answer.json()["data"]["influencer_id"] == UUID_INFLUENCER
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    timestamp = job.task_id.rsplit("_", 1)[1]
    assert sorted(keys) == [
        f"influencers/{UUID_INFLUENCER}/qa_pairs/{job.task_id}/processed_qa_{timestamp}.json",
        f"influencers/{UUID_INFLUENCER}/qa_results/{job.task_id}/generated_qa_results.jsonl",
    ]


def raw_request(url: str, head: str) -> bytes:
    """Send only a request's head over a socket and read the answer: what a server says before
    a body it was promised arrives (httpx always sends the whole body first)."""
    parts = httpx.URL(url)
    with socket.create_connection((parts.host, parts.port), timeout=10) as connection:
        connection.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


@pytest.mark.parametrize(("signed", "status"), [(False, 400), (True, 413)])
def test_an_unsigned_or_oversized_webhook_is_refused_before_its_body_is_read(
    service: tuple[Components, httpx.Client], signed: bool, status: int
) -> None:
    _, http = service
    headers = signature_headers(WEBHOOK_SECRET, "wh_big", "{}") if signed else {}
    head = (
        "POST /webhooks/openai HTTP/1.1\r\nHost: qa-sync\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + f"Content-Length: {300 * 1024 * 1024}\r\n\r\n"
    )

    answer = raw_request(str(http.base_url), head)  # 300 MiB promised, none sent

    assert answer.startswith(f"HTTP/1.1 {status}".encode())
    assert f'"status":{status}'.encode() in answer


def test_an_oversized_chunked_webhook_is_refused_while_it_streams(
    service: tuple[Components, httpx.Client],
) -> None:
    qa, http = service
    limit = qa.settings.webhook_max_body_bytes
    headers = signature_headers(WEBHOOK_SECRET, "wh_chunked", "{}")

    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b" " * limit

    answer = http.post("/webhooks/openai", content=chunks(), headers=headers)

    assert answer.status_code == 413
    assert answer.json() == {
        "status": 413,
        "message": "request body too large",
        "data": {"maxBytes": limit},
    }


def test_job_apis_need_a_valid_key(
    service: tuple[Components, httpx.Client], provider: FakeBatchApi
) -> None:
    qa, http = service
    output, _ = pairs_file(1)
    job = qa.registry.register("1", provider.seed_batch(output)["id"])
    qa.syncer.sync(job)

    for path in (f"/jobs/{job.task_id}", f"/jobs/{job.task_id}/qa-pairs"):
        anonymous = http.get(path, headers={"X-API-Key": ""})
        wrong = http.get(path, headers={"X-API-Key": "guessed"})
        bearer = http.get(path, headers={"X-API-Key": "", "Authorization": f"Bearer {API_KEY}"})
        assert (anonymous.status_code, anonymous.json()["status"]) == (401, 401)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert wrong.status_code == 401
        assert bearer.status_code == 200


def test_two_keys_are_valid_while_a_key_is_rotated(
    settings: QaSyncSettings, aws_env: str, provider: FakeBatchApi
) -> None:
    rotating = settings.model_copy(
        update={"qa_sync_api_keys": [SecretStr("old"), SecretStr("new")]}
    )
    components = build_components(rotating)
    try:
        job = components.registry.register("1", provider.seed_batch(b"")["id"])
        with BackgroundServer(create_app(components, background=False)) as server:
            answers = [
                httpx.get(f"{server.url}/jobs/{job.task_id}", headers={"X-API-Key": key})
                for key in ("old", "new", API_KEY)
            ]
    finally:
        components.close()
    assert [answer.status_code for answer in answers] == [200, 200, 401]


def test_job_apis_are_closed_when_no_key_is_configured(
    settings: QaSyncSettings, aws_env: str
) -> None:
    components = build_components(settings.model_copy(update={"qa_sync_api_keys": []}))
    try:
        with BackgroundServer(create_app(components, background=False)) as server:
            answer = httpx.get(f"{server.url}/jobs/qa_1_1", headers={"X-API-Key": API_KEY})
    finally:
        components.close()
    assert (answer.status_code, answer.json()["status"]) == (503, 503)
    assert answer.json()["message"] == "QA_SYNC_API_KEYS is not set: this API is closed"


def test_every_answer_is_the_envelope(service: tuple[Components, httpx.Client]) -> None:
    _, http = service

    unknown_path = http.get("/no/such/path")
    wrong_method = http.post("/healthz")
    bad_format = http.get("/jobs/qa_1_1/qa-pairs", params={"format": "csv"})

    assert unknown_path.json() == {"status": 404, "message": "Not Found", "data": None}
    assert wrong_method.json()["status"] == 405
    assert wrong_method.headers["allow"] == "GET"
    assert bad_format.status_code == 400
    assert bad_format.json()["data"]["errors"][0]["field"] == "format"


def test_an_unexpected_error_is_a_500_in_the_envelope(
    qa: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(task_id: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(qa.registry, "get", broken)
    client = TestClient(create_app(qa, background=False), raise_server_exceptions=False)

    answer = client.get("/jobs/qa_1_1", headers={"X-API-Key": API_KEY})

    assert answer.status_code == 500
    assert answer.json() == {"status": 500, "message": "internal error", "data": None}


@pytest.mark.parametrize("task_id", ["qa_1%00_2", "qa_1%01_2", "qa_1%1b_2"])
def test_a_task_id_with_control_characters_is_a_400(
    service: tuple[Components, httpx.Client], task_id: str
) -> None:
    _, http = service

    for path in (f"/jobs/{task_id}", f"/jobs/{task_id}/qa-pairs"):
        answer = http.get(path)
        assert (answer.status_code, answer.json()["status"]) == (400, 400)


def test_an_existing_batch_is_adopted_under_its_task_id(
    service: tuple[Components, httpx.Client], provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    qa, http = service
    output, _ = pairs_file(2)
    batch = provider.seed_batch(output)
    task_id = f"qa_{UUID_INFLUENCER}_1749819600"

    adopted = http.post(
        "/jobs",
        json={"influencer_id": UUID_INFLUENCER, "batch_id": batch["id"], "task_id": task_id},
    )
    elsewhere = http.post(
        "/jobs",
        json={"influencer_id": UUID_INFLUENCER, "batch_id": batch["id"], "task_id": "qa_x_1"},
    )

    assert (adopted.status_code, adopted.json()["data"]["task_id"]) == (201, task_id)
    assert (elsewhere.status_code, elsewhere.json()["status"]) == (409, 409)
    qa.syncer.sync(qa.registry.get(task_id))
    job = qa.registry.get(task_id)
    assert job.processed_key == (
        f"influencers/{UUID_INFLUENCER}/qa_pairs/{task_id}/processed_qa_1749819600.json"
    )
    assert job.generated_qa_pairs == 2


def test_a_registration_with_control_characters_is_a_400(
    service: tuple[Components, httpx.Client],
) -> None:
    _, http = service

    answer = http.post("/jobs", json={"influencer_id": "7\u0000", "batch_id": "batch_x"})

    assert (answer.status_code, answer.json()["status"]) == (400, 400)
    assert answer.json()["data"]["errors"][0]["field"] == "influencer_id"


def test_answers_with_a_shape_document_their_data(qa: Components) -> None:
    document = TestClient(create_app(qa, background=False)).get("/openapi.json").json()
    schemas = document["components"]["schemas"]

    def data_fields(path: str, method: str, status: str) -> set[str]:
        answer = document["paths"][path][method]["responses"][status]
        envelope = schemas[answer["content"]["application/json"]["schema"]["$ref"].split("/")[-1]]
        data = envelope["properties"]["data"]["anyOf"][0]["$ref"].split("/")[-1]
        return set(schemas[data]["properties"])

    assert {"task_id", "status", "total_qa_pairs"} <= data_fields("/jobs", "post", "201")
    assert {"task_id", "status"} <= data_fields("/jobs/{task_id}", "get", "200")
    fields = data_fields("/webhooks/openai", "post", "200")
    assert fields == {"webhook_id", "type", "batch_id"}
