"""Delivery and the request store, as the backend sees them: a result redelivered after its
failure notice reaches the member; a DynamoDB blip leaves every record telling the truth; a
result the callback took is delivered although the result queue never takes it."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.queues import queue_depth
from tests.support.records import weekly_record
from tests.support.reliability import DynamoDbBlip, Figures, Platform, StartPlatform
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SCENARIO = "9. Delivery and the store"
RESULTS_PATH = "/feedback"
NOTICES_PATH = "/feedback-failures"
TWO_PATHS = {"CALLBACK_PATH": RESULTS_PATH, "CALLBACK_FAILURE_PATH": NOTICES_PATH}
BLIP_S = 12.0


def _on(platform: Platform, path: str, request_id: str) -> list[dict[str, Any]]:
    """The receiver's record of every call about `request_id` to `path`."""
    return [
        d
        for d in platform.receiver.deliveries()
        if d["path"] == path and d["body"].get("requestId") == request_id
    ]


def _stored(platform: Platform, request_id: str) -> bool:
    """The backend stored the result (answered 200 on the results path)."""
    return any(d["status"] == 200 for d in _on(platform, RESULTS_PATH, request_id))


def _in_state(platform: Platform, request_id: str, state: str) -> bool:
    return bool(platform.record(request_id)["state"] == state)


def test_a_result_redelivered_after_its_failure_notice_reaches_the_member(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """Callback down past the delivery budget (3 s): a failure notice is taken; once the backend
    is back, `admin redeliver` sends the result, which the backend stores."""
    platform = start_platform(
        worker_env={
            **TWO_PATHS,
            "RESULT_QUEUE_URL": "",  # the callback alone: its failure fails the request
            "DELIVERY_RETRY_SECONDS": "3",
            "CALLBACK_MAX_ATTEMPTS": "1",
        }
    )
    platform.receiver.script(status=503, times=10_000, path=RESULTS_PATH)
    request_id = platform.accept(weekly_record(90_000, "notice-then-result"))
    wait_until(
        lambda: any(d["status"] == 200 for d in _on(platform, NOTICES_PATH, request_id)),
        60,
        "the failure notice",
    )
    failed = platform.record(request_id)

    platform.receiver.script(times=0)  # the backend is back
    redeliver = platform.admin("redeliver", request_id)

    [notice] = _on(platform, NOTICES_PATH, request_id)
    figures["state after the budget"] = failed["state"]
    figures["failure notices taken"] = int(notice["status"] == 200)
    figures["admin redeliver said"] = redeliver.stdout.strip().rsplit(": ", 1)[-1]
    figures["lost"] = int(not _stored(platform, request_id))
    figures["records truthful"] = platform.records_agreeing([request_id])
    assert failed["state"] == "failed"
    assert redeliver.returncode == 0, redeliver.stderr
    assert figures["admin redeliver said"] == "delivered"
    assert figures["lost"] == 0
    assert figures["records truthful"] == 1


@pytest.fixture
def blip(start_platform: StartPlatform) -> Iterator[tuple[Platform, DynamoDbBlip]]:
    """The platform with the worker's request store (only the worker's) behind the proxy."""
    platform = start_platform(worker_env={"CALLBACK_PATH": RESULTS_PATH})
    proxy = DynamoDbBlip(platform.stack.config.ports.moto)
    platform.restart("worker", AWS_ENDPOINT_URL_DYNAMODB=proxy.url)
    yield platform, proxy
    proxy.close()


@pytest.mark.parametrize(
    ("write", "containing"),
    [("every UpdateItem", ""), ("the UpdateItem that marks it delivered", "deliveredAt")],
)
def test_a_store_blip_while_requests_are_at_the_llm_leaves_every_record_truthful(
    write: str, containing: str, blip: tuple[Platform, DynamoDbBlip], figures: Figures
) -> None:
    """DynamoDB answers 500 for 12 s to the worker's writes while 5 requests are at the LLM."""
    platform, proxy = blip
    platform.llm.control(latency_s=2.0)
    ids = [platform.accept(weekly_record(91_000 + n, f"blip-{n}")) for n in range(5)]
    wait_until(lambda: platform.llm.stats()["requests"] >= len(ids), 30, "the LLM calls")
    proxy.blip(BLIP_S, "UpdateItem", containing)
    wait_until(
        lambda: all(_in_state(platform, i, "delivered") for i in ids), 90, "records delivered"
    )

    stored = sum(_stored(platform, i) for i in ids)
    figures[f"{write}: answered 500 for (s)"] = BLIP_S
    figures[f"{write}: calls answered 500"] = proxy.failed
    figures[f"{write}: lost"] = len(ids) - stored
    figures[f"{write}: records truthful"] = f"{platform.records_agreeing(ids)}/{len(ids)}"
    figures[f"{write}: LLM calls"] = platform.llm.stats()["completions"]
    figures[f"{write}: DLQ"] = len(platform.dead_letters())
    assert proxy.failed > 0
    assert stored == len(ids)
    assert platform.records_agreeing(ids) == len(ids)
    assert figures[f"{write}: LLM calls"] == len(ids)  # none generated twice
    assert figures[f"{write}: DLQ"] == 0


def test_a_result_the_callback_took_is_delivered_though_the_result_queue_never_takes_it(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """Callback 200, result queue missing (a queue that does not exist), budget 20 s."""
    platform = start_platform(worker_env={**TWO_PATHS, "DELIVERY_RETRY_SECONDS": "20"})
    assert platform.stack.queues is not None
    missing_queue = platform.stack.queues.results.replace("feedback-results", "no-such-queue")
    platform.restart("worker", RESULT_QUEUE_URL=missing_queue)
    ids = [platform.accept(weekly_record(92_000 + n, f"partial-{n}")) for n in range(3)]
    requests_queue = platform.stack.queues.requests
    sqs = platform.sqs()

    wait_until(lambda: all(_in_state(platform, i, "delivered") for i in ids), 60, "delivered")
    held = queue_depth(sqs, requests_queue)  # still retrying the result queue
    during = [platform.record(i)["result"] for i in ids]
    wait_until(lambda: queue_depth(sqs, requests_queue) == 0, 60, "the budget's end")
    after = [platform.record(i)["result"] for i in ids]

    figures["requests"] = len(ids)
    figures["delivered while the result queue was retried"] = sum(
        r["missing"] == ["result queue"] for r in during
    )
    figures["messages held meanwhile"] = held
    figures["lost"] = len(ids) - sum(_stored(platform, i) for i in ids)
    figures["failure notices"] = sum(len(_on(platform, NOTICES_PATH, i)) for i in ids)
    figures["DLQ"] = len(platform.dead_letters())
    figures["records truthful"] = platform.records_agreeing(ids)
    figures["records: callback took it, result queue missing"] = sum(
        (r["channels"], r["missing"]) == (["callback"], ["result queue"]) for r in after
    )
    assert figures["delivered while the result queue was retried"] == len(ids)
    assert figures["lost"] == 0
    assert figures["failure notices"] == 0
    assert figures["DLQ"] == 0
    assert figures["records truthful"] == len(ids)
    assert figures["records: callback took it, result queue missing"] == len(ids)
