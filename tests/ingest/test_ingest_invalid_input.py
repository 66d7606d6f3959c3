"""Bad input is a 400 (or 413) envelope that names what is wrong; nothing reaches the queue."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from feedback_ingest.settings import IngestSettings

from tests.support.ingest import JSON, RequestQueue, Serve, assert_envelope, error_fields


def _encoded(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        pytest.param(b'{"memberId": 1, "personalChallenges": [', ["body"], id="malformed JSON"),
        pytest.param(b"", ["body"], id="empty body"),
        pytest.param(b'{"memberId": "\xff\xfe"}', ["body"], id="invalid UTF-8"),
        pytest.param(b"[1, 2]", ["body"], id="an array"),
        pytest.param(b'"text"', ["body"], id="a string"),
        pytest.param(b"null", ["body"], id="null"),
        pytest.param(
            _encoded({"memberId": 1, "personalChallenges": [], "groupChallenges": []}),
            ["body"],
            id="nothing to give feedback on",
        ),
    ],
)
async def test_a_body_that_is_not_a_usable_json_object_is_a_400(
    client: httpx.AsyncClient, raw: bytes, fields: list[str]
) -> None:
    response = await client.post("/ai/feedback", content=raw, headers=JSON)
    assert error_fields(response) == fields


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"memberId": 0}, "memberId"),
        ({"memberId": "abc"}, "memberId"),
        ({"memberId": 2**63}, "memberId"),
        ({"requestId": "has space"}, "requestId"),
        ({"personalChallenges": None}, "personalChallenges"),
        (
            {"personalChallenges": [{"title": "x" * 501, "isSuccess": True}]},
            "personalChallenges[0].title",
        ),
    ],
)
async def test_an_invalid_field_is_named(
    client: httpx.AsyncClient, record: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    response = await client.post("/ai/feedback", json={**record, **change})
    assert error_fields(response) == [field]


async def test_every_failing_field_is_named_with_its_path_and_a_message(
    client: httpx.AsyncClient, request_queue: RequestQueue, record: dict[str, Any]
) -> None:
    del record["memberId"]
    record["groupChallenges"][0]["submissions"][1]["submittedAt"] = "yesterday"
    record["groupChallenges"][1]["endDate"] = "2025-06-13T13:08:16+09:00"

    response = await client.post("/ai/feedback", json=record)

    errors = assert_envelope(response, 400)["errors"]
    assert [e["field"] for e in errors] == [
        "memberId",
        "groupChallenges[0].submissions[1].submittedAt",
        "groupChallenges[1].endDate",
    ]
    assert "yesterday" in errors[1]["message"]
    assert request_queue.count() == 0


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_anything_but_json_content_type_is_a_400(
    client: httpx.AsyncClient, record: dict[str, Any], content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/ai/feedback", content=_encoded(record), headers=headers)
    assert error_fields(response) == ["Content-Type"]


LIMIT = 2048


@pytest.fixture
def small_limit(settings: IngestSettings) -> IngestSettings:
    return settings.model_copy(update={"max_body_bytes": LIMIT})


def _padded(record: dict[str, Any], size: int) -> bytes:
    body = _encoded(record)
    return body + b" " * (size - len(body))


async def test_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_a_413(
    serve: Serve, small_limit: IngestSettings, record: dict[str, Any]
) -> None:
    async with serve(small_limit) as client:
        at_limit = await client.post("/ai/feedback", content=_padded(record, LIMIT), headers=JSON)
        over = await client.post("/ai/feedback", content=_padded(record, LIMIT + 1), headers=JSON)

    assert_envelope(at_limit, 202)
    assert assert_envelope(over, 413) == {"maxBytes": LIMIT}


async def test_a_declared_content_length_over_the_limit_is_a_413_before_reading(
    serve: Serve, small_limit: IngestSettings, request_queue: RequestQueue
) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(10):
            sent += 1024
            yield b" " * 1024

    headers = {**JSON, "Content-Length": str(10 * 1024)}
    async with serve(small_limit) as client:
        response = await client.post("/ai/feedback", content=body(), headers=headers)

    assert assert_envelope(response, 413) == {"maxBytes": LIMIT}
    assert sent == 0
    assert request_queue.count() == 0


async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(
    serve: Serve, small_limit: IngestSettings
) -> None:
    chunk = 512
    sent = 0

    async def endless_body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(10_000):
            sent += chunk
            yield b" " * chunk

    async with serve(small_limit) as client:
        request = client.build_request("POST", "/ai/feedback", content=endless_body(), headers=JSON)
        assert "content-length" not in request.headers
        response = await client.send(request)

    assert assert_envelope(response, 413) == {"maxBytes": LIMIT}
    assert sent <= LIMIT + chunk


async def test_a_record_that_outgrows_the_sqs_message_limit_when_normalised_is_a_413(
    serve: Serve, settings: IngestSettings, request_queue: RequestQueue, record: dict[str, Any]
) -> None:
    # Under 256 KiB as sent; each array date grows by a few bytes as an ISO string.
    submission = {"isSuccess": True, "submittedAt": [2025, 6, 10, 7, 12]}
    record["groupChallenges"] = [{"title": "러닝", "submissions": [submission] * 1000}] * 5
    body = _encoded(record)
    assert len(body) < 262_144

    async with serve(settings.model_copy(update={"max_body_bytes": 262_144})) as client:
        response = await client.post("/ai/feedback", content=body, headers=JSON)

    assert assert_envelope(response, 413) == {"maxBytes": 262_144}
    assert request_queue.count() == 0
