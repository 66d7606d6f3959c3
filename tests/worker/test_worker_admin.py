"""`python -m feedback_worker admin`: each command as an operator runs it, a process of its own
on the worker's environment, against moto's SQS and DynamoDB and the callback receiver."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from devstack.queues import FeedbackQueues
from llm_common.requests_store import RequestState, RequestStore, Usage
from mypy_boto3_sqs import SQSClient

from tests.support.fakes import CallbackReceiver
from tests.support.queues import enqueue, receive_all

DEADLINE = datetime.now(UTC) + timedelta(days=7)


@pytest.fixture
def admin_env(worker_env: dict[str, str], request_table: str) -> dict[str, str]:
    aws = {name: value for name, value in os.environ.items() if name.startswith(("AWS_", "PATH"))}
    return {**worker_env, **aws, "REQUEST_TABLE_NAME": request_table}


@pytest.fixture
def store(request_table: str) -> RequestStore:
    return RequestStore(request_table, "us-east-1")


def admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feedback_worker", "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_prints_the_record_and_fails_for_an_unknown_id(
    admin_env: dict[str, str], store: RequestStore
) -> None:
    store.accept("adm-1", 501, DEADLINE)
    spent = Usage(prompt_tokens=480, completion_tokens=210, llm_seconds=16.5)
    store.store_result("adm-1", "잘했어요! 다음 주도 화이팅이에요.", receive=1, usage=spent)
    store.end("adm-1", RequestState.FAILED, "callback rejected the result: HTTP 404: ")

    known = admin(admin_env, "status", "adm-1")
    unknown = admin(admin_env, "status", "adm-404")

    assert known.returncode == 0, known.stderr
    record = json.loads(known.stdout)
    assert (record["state"], record["memberId"]) == ("failed", 501)
    assert record["failureReason"] == "callback rejected the result: HTTP 404: "
    # What its result cost, though never delivered.
    assert record["usage"] == {"promptTokens": 480, "completionTokens": 210, "llmSeconds": 16.5}
    assert unknown.returncode == 1
    assert "adm-404" in unknown.stderr


def test_redrive_moves_the_dlq_back_to_the_request_queue_with_why_it_was_there(
    admin_env: dict[str, str], sqs: SQSClient, feedback_queues: FeedbackQueues
) -> None:
    for n in range(3):
        enqueue(sqs, feedback_queues.dead_letters, member_id=510 + n, request_id=f"adm-dlq-{n}")

    done = admin(admin_env, "redrive")

    assert done.returncode == 0, done.stderr
    assert "moved 3 message(s)" in done.stdout
    assert receive_all(sqs, feedback_queues.dead_letters, wait_s=0) == []
    back = receive_all(sqs, feedback_queues.requests, wait_s=0)
    assert sorted(json.loads(m["Body"])["requestId"] for m in back) == [
        "adm-dlq-0",
        "adm-dlq-1",
        "adm-dlq-2",
    ]
    assert {m["Attributes"]["MessageGroupId"] for m in back} == {"510", "511", "512"}


def test_redeliver_sends_the_stored_result_and_marks_it_delivered(
    admin_env: dict[str, str],
    store: RequestStore,
    receiver: CallbackReceiver,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
) -> None:
    text = "지난주에 써 둔 피드백이에요. 이번 주도 정말 잘했어요!"
    store.accept("adm-2", 502, DEADLINE)
    store.store_result("adm-2", text, receive=1)
    store.end("adm-2", RequestState.FAILED, "undelivered 4500s after it was generated")

    done = admin(admin_env, "redeliver", "adm-2", "--channel", "callback")

    assert done.returncode == 0, done.stderr
    [delivery] = receiver.deliveries()
    assert (delivery["webhook_id"], delivery["body"]["content"]) == ("adm-2", text)
    assert receive_all(sqs, feedback_queues.results, wait_s=0) == []  # only the channel asked
    record = store.get("adm-2")
    assert record is not None
    assert (record.state, record.channels) == (RequestState.DELIVERED, ("callback",))


def test_redeliver_without_a_stored_result_does_nothing_and_says_why(
    admin_env: dict[str, str], store: RequestStore, receiver: CallbackReceiver
) -> None:
    store.accept("adm-3", 503, DEADLINE)
    store.end("adm-3", RequestState.EXPIRED, "deadline passed before the LLM was asked")

    done = admin(admin_env, "redeliver", "adm-3")

    assert done.returncode == 1
    assert "no stored result" in done.stderr
    assert receiver.deliveries() == []


def test_a_cancelled_request_shows_as_cancelled_and_has_nothing_to_redeliver(
    admin_env: dict[str, str], store: RequestStore, receiver: CallbackReceiver
) -> None:
    store.accept("adm-5", 505, DEADLINE)
    store.cancel("adm-5")

    status = admin(admin_env, "status", "adm-5")
    redeliver = admin(admin_env, "redeliver", "adm-5")

    assert status.returncode == 0, status.stderr
    record = json.loads(status.stdout)
    assert record["state"] == "cancelled"
    assert "cancelledAt" in record["times"]
    assert redeliver.returncode == 1
    assert "cancelled, with no stored result" in redeliver.stderr
    assert receiver.deliveries() == []


def test_without_a_request_table_the_record_commands_say_so(
    admin_env: dict[str, str],
) -> None:
    done = admin({**admin_env, "REQUEST_TABLE_NAME": ""}, "status", "adm-1")

    assert done.returncode == 2
    assert "REQUEST_TABLE_NAME" in done.stderr


def test_cost_sums_what_a_bursts_results_cost_per_feedback_delivered(
    admin_env: dict[str, str], store: RequestStore
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    for n, spent in enumerate(
        (Usage(500, 200, 10.0), Usage(300, 100, 5.0), Usage(1000, 400, 20.0))
    ):
        store.accept(f"adm-cost-{n}", 520 + n, DEADLINE)
        store.store_result(f"adm-cost-{n}", "잘했어요! 다음 주도 화이팅이에요.", 1, usage=spent)
        if n < 2:  # the third one's callback refused it: its cost counts, it is no feedback
            store.mark_delivered(f"adm-cost-{n}", ["callback"], "delivered", missing=[])
        else:
            store.end(f"adm-cost-{n}", RequestState.FAILED, "callback rejected the result")

    window = ("cost", "--since", since.isoformat(), "--gpu-hours", "0.5", "--gpu-price", "4")
    done = admin(admin_env, *window)
    later = admin(admin_env, "cost", "--since", (since + timedelta(hours=1)).isoformat())

    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)  # the test's own table: these three records only
    assert (figures["requests"], figures["delivered"]) == (3, 2)
    assert (figures["promptTokens"], figures["completionTokens"]) == (1800, 700)
    assert figures["promptTokensPerFeedback"] == 900
    assert figures["llmSecondsPerFeedback"] == 17.5
    assert figures["costPer1000Feedbacks"] == 1000  # 0.5 h x 4 USD for 2 feedbacks
    assert later.returncode == 1
    assert json.loads(later.stdout)["requests"] == 0
