"""The backend retries: the same requestId, the same body (in either date shape), the same
Idempotency-Key, or its own direct publish twice: each becomes one job, one LLM call, one
callback."""

import hashlib
import json
import time
from collections import Counter
from typing import Any

import pytest

from tests.support.records import weekly_record
from tests.support.reliability import Figures, Platform, StartPlatform, duplicates_by_id
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SCENARIO = "5. Duplicates"
SENDS = 3
PER_KIND = 8


def _iso_dates(body: dict[str, Any]) -> dict[str, Any]:
    """The same week with the Jackson-array dates written as ISO strings."""
    group = body["groupChallenges"][0]
    return {**body, "groupChallenges": [{**group, "startDate": "2025-06-09T00:00:00"}]}


def test_every_retry_of_the_same_request_becomes_one_job(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """Each request sent 3 times (same requestId / same body / Idempotency-Key / direct publish)."""
    platform = start_platform()
    answers: dict[str, list[str]] = {}
    for n in range(PER_KIND):
        answers[f"requestId {n}"] = [
            platform.accept(weekly_record(60_000 + n, f"dup-id-{n}")) for _ in range(SENDS)
        ]
        body = weekly_record(61_000 + n)
        shapes = [body, _iso_dates(body), body]  # the same week, dates in both shapes
        answers[f"body {n}"] = [platform.accept(shape) for shape in shapes]
        key = f"idem-{n}"
        answers[f"Idempotency-Key {n}"] = [
            platform.accept(weekly_record(62_000 + n), **{"Idempotency-Key": key})
            for _ in range(SENDS)
        ]
    direct_ids = [_publish_like_the_backend_twice(platform, 63_000 + n) for n in range(PER_KIND)]

    distinct = {ids[0] for ids in answers.values()} | set(direct_ids)
    wait_until(lambda: len(platform.accepted_ids()) >= len(distinct), 60, "deliveries")
    wait_until(lambda: platform.llm.stats()["in_flight"] == 0, 10, "the LLM idle")

    deliveries = platform.receiver.deliveries()
    figures["requests sent (POST + direct)"] = SENDS * len(answers) + 2 * len(direct_ids)
    figures["distinct requests"] = len(distinct)
    figures["retries answered with the first requestId"] = sum(
        len(set(ids)) == 1 for ids in answers.values()
    )
    figures["LLM calls"] = platform.llm.stats()["completions"]
    figures["callbacks"] = len(deliveries)
    figures["duplicate callbacks"] = duplicates_by_id(deliveries)

    assert all(len(set(ids)) == 1 for ids in answers.values()), answers
    assert platform.accepted_ids() == distinct
    assert Counter(d["webhook_id"] for d in deliveries) == dict.fromkeys(distinct, 1)
    assert figures["LLM calls"] == len(distinct)


def _publish_like_the_backend_twice(platform: Platform, member_id: int) -> str:
    """The backend's own publish (no requestId, one group, dedup = memberId-sha256(body))."""
    assert platform.stack.queues is not None
    body = json.dumps(weekly_record(member_id), ensure_ascii=False)
    dedup_id = f"{member_id}-{hashlib.sha256(body.encode()).hexdigest()}"
    sqs = platform.sqs()
    for _ in range(2):
        sqs.send_message(
            QueueUrl=platform.stack.queues.requests,
            MessageBody=body,
            MessageGroupId="feedback",
            MessageDeduplicationId=dedup_id,
        )
    return dedup_id


@pytest.mark.parametrize("store", ["on", "off"])
def test_a_retry_after_the_message_was_consumed(
    start_platform: StartPlatform, figures: Figures, store: str
) -> None:
    """20 delivered requests POSTed again once their messages were consumed and deleted: with the
    request store, no second job; without it (the baseline), SQS's deduplication alone."""
    off = {"REQUEST_TABLE_NAME": ""} if store == "off" else {}
    platform = start_platform(worker_env=off, ingest_env=off)
    bodies = [weekly_record(64_000 + n, f"{64_000 + n}-late") for n in range(20)]
    for body in bodies:
        platform.accept(body)
    wait_until(lambda: len(platform.accepted_ids()) == len(bodies), 60, "the first deliveries")
    first_calls = platform.llm.stats()["completions"]

    retried = [platform.accept(body) for body in bodies]
    # Room for a second job to show itself: more than a message's whole way through.
    wait_until(lambda: platform.llm.stats()["in_flight"] == 0, 10, "the LLM idle")
    time.sleep(5)

    deliveries = platform.receiver.deliveries()
    figures["request store"] = store
    figures["retries answered 202 with the same requestId"] = sum(
        retry == body["requestId"] for retry, body in zip(retried, bodies, strict=True)
    )
    figures["LLM calls for the retries"] = platform.llm.stats()["completions"] - first_calls
    figures["callbacks for the retries"] = len(deliveries) - len(bodies)
    assert figures["retries answered 202 with the same requestId"] == len(bodies)
    if store == "on":
        assert figures["LLM calls for the retries"] == 0
        assert figures["callbacks for the retries"] == 0
