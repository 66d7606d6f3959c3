"""Clients for the fake servers and small SQS helpers, shared by the worker's tests."""

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

TEST_SECRET = "whsec_" + base64.b64encode(b"worker-tests-secret-0123456789ab").decode()
TEST_MODEL = "test-model"
WAIT_S = 30.0
"""A generous bound for anything the worker does; tests normally finish far sooner."""


@dataclass
class FakeLlm:
    """`devstack.fake_llm` over HTTP."""

    url: str

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def control(self, **faults: Any) -> None:
        httpx.post(f"{self.url}/control", json=faults).raise_for_status()

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = httpx.get(f"{self.url}/stats").json()
        return stats

    def requests(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = httpx.get(f"{self.url}/requests").json()
        return requests

    def reset(self) -> None:
        httpx.post(f"{self.url}/reset").raise_for_status()


@dataclass
class CallbackReceiver:
    """`devstack.callback_receiver` over HTTP."""

    url: str

    def script(
        self,
        status: int | None = None,
        times: int = 1,
        retry_after: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        script = {"status": status, "times": times, "retry_after": retry_after, "delay_s": delay_s}
        httpx.post(f"{self.url}/control", json=script).raise_for_status()

    def deliveries(self) -> list[dict[str, Any]]:
        deliveries: list[dict[str, Any]] = httpx.get(f"{self.url}/deliveries").json()
        return deliveries

    def bad_signatures(self) -> int:
        stats: dict[str, int] = httpx.get(f"{self.url}/stats").json()
        return stats["bad_signatures"]

    def statuses(self) -> list[int]:
        return [delivery["status"] for delivery in self.deliveries()]

    def reset(self) -> None:
        httpx.post(f"{self.url}/reset").raise_for_status()


def feedback_request(member_id: int, request_id: str | None = None) -> dict[str, Any]:
    """A small realistic request, as ingest enqueues it (or the backend, without requestId)."""
    body: dict[str, Any] = {
        "memberId": member_id,
        "personalChallenges": [{"id": 1, "title": f"아침 산책 {member_id}", "isSuccess": True}],
        "groupChallenges": [
            {
                "id": 7,
                "title": "주 3회 러닝",
                "startDate": "2025-06-09T00:00:00",
                "endDate": "2025-06-15T23:59:59",
                "submissions": [{"isSuccess": True, "submittedAt": "2025-06-10T07:00:00"}],
            }
        ],
    }
    if request_id is not None:
        body["requestId"] = request_id
    return body


def enqueue(sqs: "SQSClient", queue_url: str, member_id: int, request_id: str) -> None:
    """What ingest does: group = member, dedup = request id."""
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(feedback_request(member_id, request_id), ensure_ascii=False),
        MessageGroupId=str(member_id),
        MessageDeduplicationId=request_id,
    )


def enqueue_like_backend(sqs: "SQSClient", queue_url: str, member_id: int) -> str:
    """What the backend does when it publishes directly; returns the dedup id."""
    body = json.dumps(feedback_request(member_id), ensure_ascii=False)
    dedup_id = f"{member_id}-{hashlib.sha256(body.encode()).hexdigest()}"
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        MessageGroupId="feedback",
        MessageDeduplicationId=dedup_id,
    )
    return dedup_id


def enqueue_raw(sqs: "SQSClient", queue_url: str, body: str, group: str) -> str:
    answer = sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        MessageGroupId=group,
        MessageDeduplicationId=hashlib.sha256(body.encode()).hexdigest(),
    )
    return answer["MessageId"]


def queue_counts(sqs: "SQSClient", queue_url: str) -> tuple[int, int]:
    """(visible, in flight or delayed) messages."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def receive_all(sqs: "SQSClient", queue_url: str, wait_s: int = 1) -> list["MessageTypeDef"]:
    """Every message visible in `queue_url` now (with all attributes), left in flight."""
    messages: list[MessageTypeDef] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_s,
            VisibilityTimeout=60,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


async def eventually(condition: Callable[[], bool], within_s: float = WAIT_S) -> None:
    """Wait until `condition()` holds (it runs on a thread: it may block on HTTP or SQS)."""
    deadline = time.monotonic() + within_s
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s:.0f}s")
        await asyncio.sleep(0.1)
