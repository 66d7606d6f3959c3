"""A request's record through its life, as the backend sees it with GET /ai/feedback/{id}: real
processes (ingest, worker, moto's SQS and DynamoDB, the fake LLM, the callback receiver)."""

from typing import Any

import httpx
import pytest
from devstack.stack import Stack
from llm_common.contracts.example import example_weekly_record

from tests.support.factories import StartStack
from tests.support.fakes import CallbackReceiver, SimulatedLlm
from tests.support.queues import queue_depth
from tests.support.stack import stack_sqs
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

FAST = {
    "SQS_WAIT_SECONDS": "1",
    "RETRY_DELAY_SECONDS": "1",
    "CALLBACK_MAX_ATTEMPTS": "1",
    "CALLBACK_TIMEOUT_SECONDS": "2",
    "CALLBACK_PATH": "/feedback",
    "CALLBACK_FAILURE_PATH": "/feedback-failures",
    # The callback alone: while it fails the request is `processing`, and a refusal fails it
    # (with the result queue too, the queue taking the result would make it `delivered`).
    "RESULT_QUEUE_URL": "",
}


def _start(start_stack: StartStack) -> tuple[Stack, SimulatedLlm, CallbackReceiver]:
    """The platform with the fake LLM, and clients of the LLM and the receiver."""
    stack = start_stack(llm="fake", worker_env=FAST)
    llm = SimulatedLlm(f"http://127.0.0.1:{stack.config.ports.llm}")
    return stack, llm, CallbackReceiver(stack.callback_url)


def _post(stack: Stack, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{stack.ingest_url}/ai/feedback", json=body, headers=stack.ingest_headers, timeout=10
    )


def _record(stack: Stack, request_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{stack.ingest_url}/ai/feedback/{request_id}", headers=stack.ingest_headers, timeout=10
    )
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def _once(stack: Stack, request_id: str, state: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def reached() -> bool:
        seen.append(_record(stack, request_id))
        return seen[-1]["state"] == state

    wait_until(reached, 60, f"{request_id} {state}", every=0.1)
    return seen[-1]


def test_accepted_processing_delivered_and_a_late_retry_makes_no_second_job(
    start_stack: StartStack,
) -> None:
    stack, llm, receiver = _start(start_stack)
    body = example_weekly_record("life-1", 4242)
    worker = stack.processes["worker"]
    worker.stop()

    assert _post(stack, body).status_code == 202
    accepted = _once(stack, "life-1", "accepted")
    receiver.script(status=503, times=4)  # the backend is deploying: a few rounds of 503
    worker.start()
    processing = _once(stack, "life-1", "processing")
    delivered = _once(stack, "life-1", "delivered")
    [callback] = [d for d in receiver.deliveries() if d["status"] == 200]

    assert set(accepted["times"]) == {"acceptedAt", "enqueuedAt"}
    assert "result" not in accepted
    assert {"processingAt", "generatedAt"} <= set(processing["times"])
    assert "result" not in processing
    assert delivered["attempts"] == 1
    assert delivered["result"]["content"] == callback["body"]["content"]
    assert delivered["result"]["channels"] == ["callback"]
    assert llm.stats()["completions"] == 1

    # The message is consumed and deleted: SQS's deduplication has nothing left to compare.
    retry = _post(stack, body)

    assert retry.json() == {"status": 202, "message": "accepted", "data": {"requestId": "life-1"}}
    assert _record(stack, "life-1")["state"] == "delivered"
    assert llm.stats()["completions"] == 1
    assert len([d for d in receiver.deliveries() if d["webhook_id"] == "life-1"]) == 5


def test_a_request_cancelled_before_a_worker_took_it_gets_no_llm_call_and_no_delivery(
    start_stack: StartStack,
) -> None:
    stack, llm, receiver = _start(start_stack)
    worker = stack.processes["worker"]
    worker.stop()
    assert _post(stack, example_weekly_record("life-cancel", 4545)).status_code == 202
    cancel = f"{stack.ingest_url}/ai/feedback/life-cancel"

    cancelled = httpx.delete(cancel, headers=stack.ingest_headers, timeout=10)
    again = httpx.delete(cancel, headers=stack.ingest_headers, timeout=10)
    worker.start()
    assert stack.queues is not None
    sqs, requests_queue = stack_sqs(stack), stack.queues.requests
    wait_until(lambda: queue_depth(sqs, requests_queue) == 0, 60, "its message deleted")

    assert cancelled.status_code == 200
    assert again.json() == cancelled.json()
    assert _record(stack, "life-cancel")["state"] == "cancelled"
    assert llm.stats()["requests"] == 0
    assert receiver.deliveries() == []


def test_expired_and_refused_requests_end_with_why_and_a_notice_on_the_failure_path(
    start_stack: StartStack,
) -> None:
    stack, llm, receiver = _start(start_stack)
    stale = {**example_weekly_record("life-old", 4343), "deadline": [2020, 1, 1, 0, 0]}

    assert _post(stack, stale).status_code == 202
    expired = _once(stack, "life-old", "expired")

    assert expired["failureReason"].startswith("deadline 2020-01-01T00:00:00 passed")
    assert llm.stats()["requests"] == 0
    receiver.script(status=404)
    assert _post(stack, example_weekly_record("life-404", 4444)).status_code == 202
    failed = _once(stack, "life-404", "failed")
    wait_until(lambda: len(receiver.deliveries()) == 3, 30, "the notices")

    assert failed["failureReason"] == "callback rejected the result: HTTP 404: "
    paths = {(d["path"], d["body"]["requestId"], d["status"]) for d in receiver.deliveries()}
    assert paths == {
        ("/feedback-failures", "life-old", 200),
        ("/feedback", "life-404", 404),
        ("/feedback-failures", "life-404", 200),
    }
    notices = {
        d["body"]["requestId"]: d["body"] for d in receiver.deliveries() if d["status"] == 200
    }
    assert notices["life-old"]["state"] == "expired"
    assert notices["life-404"] | {"timestamp": None} == {
        "requestId": "life-404",
        "memberId": 4444,
        "state": "failed",
        "reason": "callback rejected the result: HTTP 404: ",
        "timestamp": None,
    }
