"""A role that may read the queue but not send to it: /readyz must not say ready.

moto's server with its IAM enforcement on (after the setup's own calls), so the refusal is
SQS's real AccessDenied over HTTP, for an identity allowed GetQueueAttributes only."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from devstack.processes import ManagedProcess, free_port, python_module
from feedback_ingest.settings import IngestSettings

from tests.support.ingest import JSON, Serve, assert_envelope

SETUP_CALLS = 4
"""The calls below before moto starts checking every request against its IAM policies."""


@pytest.fixture
def read_only_role(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[IngestSettings]:
    """Ingest's settings on a FIFO queue its credentials may read but not send to."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = ManagedProcess(
        name="moto-iam",
        argv=python_module("moto.server", "-H", "127.0.0.1", "-p", str(port)),
        env={"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS)},
        log_path=tmp_path / "moto-iam.log",
        ready_url=f"{endpoint}/moto-api/",
    ).start(timeout=30)
    admin = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **admin)
    sqs = boto3.client("sqs", aws_access_key_id="setup", aws_secret_access_key="setup", **admin)
    queue_url = sqs.create_queue(QueueName="requests.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    iam.create_user(UserName="ingest")
    read_only = {"Effect": "Allow", "Action": ["sqs:GetQueueAttributes"], "Resource": "*"}
    iam.put_user_policy(
        UserName="ingest",
        PolicyName="read-only",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [read_only]}),
    )
    key = iam.create_access_key(UserName="ingest")["AccessKey"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    try:
        yield IngestSettings(feedback_queue_url=queue_url, queue_depth_interval_seconds=0)
    finally:
        moto.stop()


async def test_a_refused_sendmessage_is_a_503_and_readyz_stops_saying_ready(
    serve: Serve, read_only_role: IngestSettings, record: dict[str, Any]
) -> None:
    async with serve(read_only_role) as client:
        # GetQueueAttributes answers: before any send, the queue looks fine.
        assert_envelope(await client.get("/readyz"), 200)
        response = await client.post("/ai/feedback", json=record, headers=JSON)
        ready = await client.get("/readyz")

    assert_envelope(response, 503)
    assert response.headers["retry-after"] == "5"
    status = assert_envelope(ready, 503)
    assert status["queue"].startswith("refuses SendMessage")
