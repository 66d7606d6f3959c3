"""A POSTed request comes back as a signed callback and a result-queue message (real processes)."""

import json
from datetime import datetime

import httpx
import pytest
from devstack.stack import Stack
from llm_common.contracts import FeedbackResult
from llm_common.contracts.example import example_weekly_record
from llm_common.webhooks import verify_signature

from tests.support.factories import StartStack
from tests.support.scrape import Scrape
from tests.support.stack import stack_sqs, wait_for_callback
from tests.support.vllm import RunningVllm

pytestmark = pytest.mark.e2e


def _post_feedback(stack: Stack, request_id: str, member_id: int = 1024) -> None:
    body = example_weekly_record(request_id, member_id)
    answer = httpx.post(
        f"{stack.ingest_url}/ai/feedback", json=body, headers=stack.ingest_headers, timeout=10
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "status": 202,
        "message": "accepted",
        "data": {"requestId": request_id},
    }


def _assert_result_message(stack: Stack, request_id: str, member_id: int) -> FeedbackResult:
    assert stack.queues is not None
    received = stack_sqs(stack).receive_message(
        QueueUrl=stack.queues.results,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=5,
        MessageSystemAttributeNames=["All"],
    )["Messages"]
    assert len(received) == 1
    message = received[0]
    assert message["Attributes"]["MessageGroupId"] == str(member_id)
    assert message["Attributes"]["MessageDeduplicationId"] == request_id
    return FeedbackResult.model_validate_json(message["Body"])


def _assert_signed_callback(stack: Stack, request_id: str, member_id: int) -> FeedbackResult:
    delivery = wait_for_callback(stack, request_id, timeout=90)
    # The receiver verified the signature; verify it here too, the way the backend would. The
    # worker sends compact UTF-8 JSON, which this re-encoding reproduces byte for byte.
    raw_body = json.dumps(delivery["body"], ensure_ascii=False, separators=(",", ":"))
    headers = {k: v for k, v in delivery["headers"].items() if k.startswith("webhook-")}
    result = FeedbackResult.model_validate(delivery["body"])
    assert result.member_id == member_id
    assert result.request_id == request_id
    assert delivery["status"] == 200
    assert headers["webhook-id"] == request_id
    assert headers["webhook-signature"].startswith("v1,")
    verify_signature(stack.callback_secret, raw_body, headers)
    return result


def test_request_comes_back_as_signed_callback_and_result_message(
    start_stack: StartStack,
) -> None:
    stack = start_stack(llm="fake")
    _post_feedback(stack, "e2e-fake-1", member_id=77)

    via_callback = _assert_signed_callback(stack, "e2e-fake-1", member_id=77)
    via_queue = _assert_result_message(stack, "e2e-fake-1", member_id=77)

    assert via_callback.content == via_queue.content
    # The fake LLM echoes the prompt's challenge lines: the member's record reached the model.
    assert "아침 6시 기상" in via_callback.content
    assert via_queue.status == "success"
    assert isinstance(via_queue.timestamp, datetime)
    # Delivered means deleted: nothing is left on the request queue, nothing in the DLQ.
    assert stack.queues is not None
    attributes = stack_sqs(stack).get_queue_attributes(
        QueueUrl=stack.queues.requests, AttributeNames=["All"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_real_llm_writes_the_feedback(start_stack: StartStack, vllm: RunningVllm) -> None:
    """vLLM itself (its CPU build, Gemma 3 270M) answers through the whole path."""
    stack = start_stack(llm=vllm.base_url, llm_model=vllm.model)
    _post_feedback(stack, "e2e-vllm-1", member_id=4242)

    via_callback = _assert_signed_callback(stack, "e2e-vllm-1", member_id=4242)
    via_queue = _assert_result_message(stack, "e2e-vllm-1", member_id=4242)

    assert via_callback.content.strip()
    assert via_callback.content == via_queue.content
    models = httpx.get(f"{vllm.base_url}/models", timeout=5).json()
    assert models["data"][0]["id"] == "gemma-3-270m"
    # The engine's own counters, which the LLM gate reads in production, saw the request.
    scrape = Scrape.of(f"{vllm.url}/metrics")
    assert scrape.value("vllm:generation_tokens_total", engine="0", model_name=vllm.model) > 0
