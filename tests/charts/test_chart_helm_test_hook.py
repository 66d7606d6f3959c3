"""The `helm test` pod's script, run as the pod would run it, against the real ingest
(`python -m feedback_ingest`, over HTTP) with moto's SQS behind it."""

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from devstack.processes import ManagedProcess, free_port, python_module
from devstack.queues import FeedbackQueues

from tests.support.charts import Manifest, one

Render = Callable[[str], list[Manifest]]
API_KEY = "helm-test-key"


@pytest.fixture
def hook_pod(render_scenario: Render) -> Manifest:
    return one(render_scenario("defaults"), "Pod", "test")


@pytest.fixture
def ingest_url(feedback_queues: FeedbackQueues, aws_env: str, log_dir: Path) -> Iterator[str]:
    port = free_port()
    process = ManagedProcess(
        name="ingest",
        argv=python_module("feedback_ingest"),
        env={
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "FEEDBACK_QUEUE_URL": feedback_queues.requests,
            "INGEST_API_KEYS": f"other-key,{API_KEY}",
        },
        log_path=log_dir / "ingest.log",
        ready_url=f"http://127.0.0.1:{port}/readyz",
    ).start(timeout=60)
    yield f"http://127.0.0.1:{port}/ai/feedback"
    process.stop()


def run_hook(pod: Manifest, url: str, api_keys: str) -> subprocess.CompletedProcess[str]:
    """The container's command, with the pod's env but the URL of the local ingest."""
    (container,) = pod["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["python", "-c"]
    env = {entry["name"]: entry.get("value", "") for entry in container["env"]}
    env |= {"INGEST_URL": url, "INGEST_API_KEYS": api_keys}
    return subprocess.run(
        [sys.executable, "-c", command[2]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hook_is_a_helm_test_that_cleans_up(hook_pod: Manifest) -> None:
    annotations = hook_pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert hook_pod["spec"]["restartPolicy"] == "Never"


def test_hook_passes_when_ingest_accepts_and_the_request_is_queued(
    hook_pod: Manifest, ingest_url: str, feedback_queues: FeedbackQueues, aws_env: str
) -> None:
    # The first key of INGEST_API_KEYS is the one the pod presents.
    result = run_hook(hook_pod, ingest_url, api_keys=f"{API_KEY},other-key")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "-> 202" in result.stdout

    sqs = boto3.client("sqs", endpoint_url=aws_env, region_name="us-east-1")
    (message,) = sqs.receive_message(QueueUrl=feedback_queues.requests, WaitTimeSeconds=1)[
        "Messages"
    ]
    job = json.loads(message["Body"])
    assert job["requestId"] == "1-helm-test-feedback-1"
    assert job["memberId"] == 1
    submitted = job["groupChallenges"][0]["submissions"][0]["submittedAt"]
    assert submitted == "2025-06-13T13:08:16.710986"


def test_hook_fails_when_ingest_refuses_the_request(hook_pod: Manifest, ingest_url: str) -> None:
    result = run_hook(hook_pod, ingest_url, api_keys="wrong-key")
    assert result.returncode != 0
    assert "expected 202, got 401" in result.stderr


def test_hook_fails_when_ingest_is_unreachable(hook_pod: Manifest) -> None:
    result = run_hook(hook_pod, f"http://127.0.0.1:{free_port()}/ai/feedback", api_keys="")
    assert result.returncode != 0
    assert "ingest unreachable" in result.stderr
