"""/openapi.json is a valid document that shows the backend how to call POST /ai/feedback."""

import re
from typing import Any

import httpx
import pytest
from llm_common.contracts import FeedbackRequest
from openapi_spec_validator import validate

from tests.support.ingest import assert_envelope


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _operation(document: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"]["/ai/feedback"]["post"]
    return operation


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_the_request_example_has_korean_titles_and_both_date_shapes(
    document: dict[str, Any],
) -> None:
    body = _operation(document)["requestBody"]["content"]["application/json"]
    example = body["example"]
    group = example["groupChallenges"][0]

    assert body["schema"] == {"$ref": "#/components/schemas/FeedbackRequest"}
    assert group["title"] == "주 3회 러닝"
    assert isinstance(group["startDate"], list)
    assert isinstance(group["endDate"], str)
    FeedbackRequest.model_validate(example)


def test_dates_are_documented_as_a_string_or_a_jackson_array(document: dict[str, Any]) -> None:
    submitted_at = document["components"]["schemas"]["Submission"]["properties"]["submittedAt"]
    assert {shape["type"] for shape in submitted_at["anyOf"]} == {"string", "array"}


def test_every_answer_is_documented_as_an_envelope_and_422_is_not(
    document: dict[str, Any],
) -> None:
    responses = _operation(document)["responses"]

    assert set(responses) == {"202", "400", "401", "409", "413", "503"}
    for response in responses.values():
        schema = response["content"]["application/json"]["schema"]
        assert schema["$ref"].startswith("#/components/schemas/Envelope")
    assert "Retry-After" in responses["503"]["headers"]


def _data_schema(document: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """The schema of `data` in a documented envelope, followed through its references."""
    schemas = document["components"]["schemas"]
    envelope = schemas[response["content"]["application/json"]["schema"]["$ref"].split("/")[-1]]
    data: dict[str, Any] = schemas[
        envelope["properties"]["data"]["anyOf"][0]["$ref"].split("/")[-1]
    ]
    return data


def test_answers_with_a_shape_document_their_data(document: dict[str, Any]) -> None:
    responses = _operation(document)["responses"]

    assert set(_data_schema(document, responses["202"])["properties"]) == {"requestId"}
    assert set(_data_schema(document, responses["409"])["properties"]) == {"requestId"}
    assert set(_data_schema(document, responses["400"])["properties"]) == {"errors"}


def test_a_requests_status_answer_is_documented_with_its_shape(document: dict[str, Any]) -> None:
    answer = document["paths"]["/ai/feedback/{request_id}"]["get"]["responses"]["200"]
    status = _data_schema(document, answer)

    assert {"requestId", "memberId", "state", "deadline", "times", "result"} <= set(
        status["properties"]
    )
    assert set(document["components"]["schemas"]["RequestState"]["enum"]) >= {"delivered"}


def test_a_cancels_answers_are_documented_with_the_requests_status(
    document: dict[str, Any],
) -> None:
    responses = document["paths"]["/ai/feedback/{request_id}"]["delete"]["responses"]

    assert {"200", "401", "404", "409", "503"} <= set(responses)
    for code in ("200", "409"):
        assert {"requestId", "state", "times"} <= set(
            _data_schema(document, responses[code])["properties"]
        )
    assert responses["409"]["content"]["application/json"]["example"]["data"]["state"] == (
        "generating"
    )
    assert "Retry-After" in responses["503"]["headers"]
    states = set(document["components"]["schemas"]["RequestState"]["enum"])
    assert {"generating", "cancelled"} <= states


def test_both_ways_to_send_the_api_key_are_documented(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["HTTPBearer"] == {"type": "http", "scheme": "bearer"}


async def test_the_documented_example_is_accepted(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    example = _operation(document)["requestBody"]["content"]["application/json"]["example"]
    response = await client.post("/ai/feedback", json=example)
    assert assert_envelope(response, 202) == {"requestId": example["requestId"]}


def test_the_request_id_rule_is_documented_for_the_body_and_the_header(
    document: dict[str, Any],
) -> None:
    """A client validating against the document refuses what the ingest refuses."""
    body_id = document["components"]["schemas"]["FeedbackRequest"]["properties"]["requestId"]
    [header] = _operation(document)["parameters"]
    [body_schema] = [shape for shape in body_id["anyOf"] if shape["type"] == "string"]

    for schema in (body_schema, header["schema"]):
        assert schema["maxLength"] == 128
        assert re.fullmatch(schema["pattern"], "1024-weekly-2025-06-16")
        for unreachable in ("team/7/week-24", "..", "week?24"):
            assert not re.fullmatch(schema["pattern"], unreachable)
