"""What the ingest tests check responses and the queue with."""

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

Serve = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
"""`serve(settings_or_app, authenticated=True)`: an HTTP client for the app, its lifespan
running, that sends the tests' API key unless `authenticated` is False."""

JSON = {"Content-Type": "application/json"}


@dataclass
class QueuedMessage:
    body: dict[str, Any]
    raw_body: str
    group_id: str
    deduplication_id: str


@dataclass
class RequestQueue:
    """The feedback queue as a consumer sees it."""

    sqs: "SQSClient"
    url: str

    def count(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def receive_and_delete(self) -> None:
        """What a worker does with one message it has finished: the queue has it no more."""
        message = self.sqs.receive_message(QueueUrl=self.url)["Messages"][0]
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])

    def receive_one(self) -> QueuedMessage:
        messages = self.sqs.receive_message(
            QueueUrl=self.url, AttributeNames=["All"], MaxNumberOfMessages=10
        ).get("Messages", [])
        assert len(messages) == 1, messages
        return _queued(messages[0])


def _queued(message: "MessageTypeDef") -> QueuedMessage:
    attributes = message["Attributes"]
    return QueuedMessage(
        body=json.loads(message["Body"]),
        raw_body=message["Body"],
        group_id=attributes["MessageGroupId"],
        deduplication_id=attributes["MessageDeduplicationId"],
    )


def assert_envelope(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is the platform envelope with `status`; returns its `data`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body.keys() == {"status", "message", "data"}
    assert body["status"] == status
    assert isinstance(body["message"], str)
    assert body["message"]
    data: dict[str, Any] = body["data"] or {}
    return data


def error_fields(response: httpx.Response) -> list[str]:
    """The fields a 400 names."""
    data = assert_envelope(response, 400)
    return [error["field"] for error in data["errors"]]
