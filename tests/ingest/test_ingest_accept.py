"""A valid record is answered 202 only once it is on the queue, as the worker expects it."""

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from llm_common.contracts import FeedbackJob

from tests.support.ingest import JSON, RequestQueue, assert_envelope, error_fields


async def test_accepted_record_is_queued_normalised_grouped_by_member_and_deduplicated_by_id(
    client: httpx.AsyncClient, request_queue: RequestQueue, record: dict[str, Any]
) -> None:
    response = await client.post("/ai/feedback", json={**record, "requestId": "1024-week-24"})

    assert response.json() == {
        "status": 202,
        "message": "accepted",
        "data": {"requestId": "1024-week-24"},
    }
    message = request_queue.receive_one()
    assert message.group_id == "1024"
    assert message.deduplication_id == "1024-week-24"
    body = message.body
    assert body["schemaVersion"] == 1
    assert body["requestId"] == "1024-week-24"
    assert body["memberId"] == 1024
    assert datetime.fromisoformat(body["acceptedAt"]).utcoffset() == timedelta(0)
    group = body["groupChallenges"][0]
    assert group["title"] == "주 3회 러닝"
    assert group["startDate"] == "2025-06-09T00:00:00"
    assert [s["submittedAt"] for s in group["submissions"]] == [
        "2025-06-10T07:12:05.710986",
        "2025-06-12T07:30:00",
        "2025-06-14T08:01:44.500000",
    ]
    assert FeedbackJob.model_validate_json(message.raw_body).request_id == "1024-week-24"


async def test_the_same_request_id_twice_is_one_message(
    client: httpx.AsyncClient, request_queue: RequestQueue, record: dict[str, Any]
) -> None:
    for _ in range(2):
        response = await client.post("/ai/feedback", json={**record, "requestId": "1024-retry-me"})
        assert assert_envelope(response, 202) == {"requestId": "1024-retry-me"}

    assert request_queue.count() == 1


@pytest.mark.parametrize("sent_as", ["body", "header"])
async def test_without_the_store_an_id_another_member_could_use_is_a_400_and_not_queued(
    client: httpx.AsyncClient, request_queue: RequestQueue, record: dict[str, Any], sent_as: str
) -> None:
    # Nothing remembers which member used an id: member 2048's "weekly-24" would share member
    # 1024's SQS deduplication id and be answered 202, then dropped.
    for member_id in (1024, 2048):
        body = {**record, "memberId": member_id}
        if sent_as == "body":
            response = await client.post("/ai/feedback", json={**body, "requestId": "weekly-24"})
        else:
            headers = {"Idempotency-Key": "weekly-24"}
            response = await client.post("/ai/feedback", json=body, headers=headers)

        assert error_fields(response) == ["requestId" if sent_as == "body" else "Idempotency-Key"]
        message = response.json()["data"]["errors"][0]["message"]
        assert message.startswith(f'must begin with "{member_id}-"')
    assert request_queue.count() == 0


async def test_without_the_store_two_members_ids_of_the_same_suffix_are_two_messages(
    client: httpx.AsyncClient, request_queue: RequestQueue, record: dict[str, Any]
) -> None:
    for member_id in (1024, 2048):
        body = {**record, "memberId": member_id, "requestId": f"{member_id}-weekly-24"}
        assert_envelope(await client.post("/ai/feedback", json=body), 202)

    assert request_queue.count() == 2


async def test_the_same_body_without_id_twice_is_one_message_with_a_derived_id(
    client: httpx.AsyncClient, request_queue: RequestQueue, record: dict[str, Any]
) -> None:
    first = assert_envelope(await client.post("/ai/feedback", json=record), 202)
    second = assert_envelope(await client.post("/ai/feedback", json=record), 202)

    assert first["requestId"] == second["requestId"]
    assert first["requestId"].startswith("1024-")
    assert request_queue.count() == 1
    assert request_queue.receive_one().deduplication_id == first["requestId"]


async def test_the_same_week_in_the_other_date_shape_gets_the_same_derived_id(
    client: httpx.AsyncClient, record: dict[str, Any]
) -> None:
    as_strings = assert_envelope(await client.post("/ai/feedback", json=record), 202)
    record["groupChallenges"][0]["startDate"] = "2025-06-09T00:00:00"
    record["groupChallenges"][0]["submissions"][1]["submittedAt"] = [2025, 6, 12, 7, 30]

    as_arrays = assert_envelope(await client.post("/ai/feedback", json=record), 202)

    assert as_arrays["requestId"] == as_strings["requestId"]


async def test_different_weeks_without_id_are_two_messages(
    client: httpx.AsyncClient, request_queue: RequestQueue, record: dict[str, Any]
) -> None:
    first = assert_envelope(await client.post("/ai/feedback", json=record), 202)
    record["personalChallenges"][0]["isSuccess"] = False
    second = assert_envelope(await client.post("/ai/feedback", json=record), 202)

    assert first["requestId"] != second["requestId"]
    assert request_queue.count() == 2


async def test_idempotency_key_is_the_request_id_when_the_body_has_none(
    client: httpx.AsyncClient, request_queue: RequestQueue, record: dict[str, Any]
) -> None:
    headers = {"Idempotency-Key": "1024-key-42"}
    for _ in range(2):
        response = await client.post("/ai/feedback", json=record, headers=headers)
        assert assert_envelope(response, 202) == {"requestId": "1024-key-42"}

    assert request_queue.count() == 1
    message = request_queue.receive_one()
    assert message.deduplication_id == "1024-key-42"
    assert message.body["requestId"] == "1024-key-42"


async def test_idempotency_key_equal_to_the_body_request_id_is_accepted(
    client: httpx.AsyncClient, record: dict[str, Any]
) -> None:
    response = await client.post(
        "/ai/feedback",
        json={**record, "requestId": "1024-same"},
        headers={"Idempotency-Key": "1024-same"},
    )
    assert assert_envelope(response, 202) == {"requestId": "1024-same"}


async def test_idempotency_key_that_disagrees_with_the_body_is_refused(
    client: httpx.AsyncClient, request_queue: RequestQueue, record: dict[str, Any]
) -> None:
    response = await client.post(
        "/ai/feedback",
        json={**record, "requestId": "body-id"},
        headers={"Idempotency-Key": "other"},
    )
    assert error_fields(response) == ["requestId"]
    assert request_queue.count() == 0


async def test_idempotency_key_that_cannot_be_a_deduplication_id_is_refused(
    client: httpx.AsyncClient, record: dict[str, Any]
) -> None:
    response = await client.post("/ai/feedback", json=record, headers={"Idempotency-Key": "a b"})
    assert error_fields(response) == ["Idempotency-Key"]


async def test_json_with_a_utf8_charset_is_accepted(
    client: httpx.AsyncClient, record: dict[str, Any]
) -> None:
    response = await client.post(
        "/ai/feedback",
        content=httpx.Request("POST", "/", json=record).content,
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    assert_envelope(response, 202)


async def test_a_title_with_characters_sqs_refuses_raw_reaches_the_worker_unchanged(
    client: httpx.AsyncClient, request_queue: RequestQueue, record: dict[str, Any]
) -> None:
    record["personalChallenges"][0]["title"] = "독서\uffff끝"
    response = await client.post("/ai/feedback", json=record, headers=JSON)
    assert_envelope(response, 202)

    message = request_queue.receive_one()
    assert "\uffff" not in message.raw_body
    assert message.body["personalChallenges"][0]["title"] == "독서\uffff끝"
