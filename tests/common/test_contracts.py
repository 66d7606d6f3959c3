"""The feedback contract exactly as the Spring backend speaks it (docs/backend-contract.md)."""

import json
from datetime import datetime
from typing import Any

import pytest
from llm_common.contracts import (
    Envelope,
    FailureNotice,
    FeedbackJob,
    FeedbackRequest,
    FeedbackResult,
)
from pydantic import ValidationError


def _request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "memberId": 42,
        "personalChallenges": [{"id": 1, "title": "아침 러닝", "isSuccess": True}],
        "groupChallenges": [
            {
                "id": 7,
                "title": "물 2L 마시기",
                "startDate": "2025-06-09T00:00:00",
                "endDate": "2025-06-15T23:59:59",
                "submissions": [
                    {"isSuccess": True, "submittedAt": "2025-06-13T13:08:16.710986"},
                    {"isSuccess": False, "submittedAt": [2025, 6, 14, 9, 30]},
                ],
            }
        ],
    }
    body.update(overrides)
    return body


def _submitted_at(value: Any) -> datetime:
    body = _request()
    body["groupChallenges"][0]["submissions"] = [{"isSuccess": True, "submittedAt": value}]
    return FeedbackRequest.model_validate(body).group_challenges[0].submissions[0].submitted_at


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("2025-06-13T13:08:16.710986", datetime(2025, 6, 13, 13, 8, 16, 710986)),
        ("2025-06-12T00:00:00", datetime(2025, 6, 12)),
        ("2025-06-12 07:05:03", datetime(2025, 6, 12, 7, 5, 3)),
        ([2025, 6, 12, 7, 5], datetime(2025, 6, 12, 7, 5)),
        ([2025, 6, 12, 7, 5, 3], datetime(2025, 6, 12, 7, 5, 3)),
        ([2025, 6, 13, 13, 8, 16, 710986000], datetime(2025, 6, 13, 13, 8, 16, 710986)),
        ([2025, 6, 13, 13, 8, 16, 999], datetime(2025, 6, 13, 13, 8, 16, 0)),
        ([2025, 6, 13, 13, 8, 16, 1000], datetime(2025, 6, 13, 13, 8, 16, 1)),
    ],
)
def test_every_backend_date_shape_is_read_as_the_same_local_time(
    wire: Any, expected: datetime
) -> None:
    assert _submitted_at(wire) == expected


@pytest.mark.parametrize(
    "wire",
    [
        [2025, 6, 12, 7],  # too short
        [2025, 6, 12, 7, 5, 3, 1, 1],  # too long
        [2025, 6, 12, 7, 5, 3, 1_000_000_000],  # nanoseconds out of range
        [2025, 13, 1, 0, 0],  # month 13
        [2025, 6, 12, 7, "5"],  # not integers
        [2025, 6, 12, 7, True],
        "2025-06-13T13:08:16+09:00",  # a zone where Java has none
        "yesterday",
        "",
        12345,
        None,
    ],
)
def test_malformed_dates_are_rejected(wire: Any) -> None:
    with pytest.raises(ValidationError):
        _submitted_at(wire)


def test_dates_are_normalised_to_iso_strings_on_the_wire() -> None:
    request = FeedbackRequest.model_validate(_request())
    wire = json.loads(request.model_dump_json())
    submissions = wire["groupChallenges"][0]["submissions"]
    assert submissions[0]["submittedAt"] == "2025-06-13T13:08:16.710986"
    assert submissions[1]["submittedAt"] == "2025-06-14T09:30:00"
    assert wire["groupChallenges"][0]["startDate"] == "2025-06-09T00:00:00"


def test_null_or_missing_ids_titles_and_submissions_are_accepted() -> None:
    request = FeedbackRequest.model_validate(
        _request(
            personalChallenges=[
                {"isSuccess": False},
                {"id": None, "title": None, "isSuccess": True},
            ],
            groupChallenges=[{"title": "독서", "startDate": [2025, 6, 9, 0, 0]}],
        )
    )
    assert request.personal_challenges[0].title is None
    assert request.group_challenges[0].submissions == []
    assert request.group_challenges[0].id is None


def test_one_empty_list_is_fine_but_both_empty_is_rejected() -> None:
    assert FeedbackRequest.model_validate(_request(groupChallenges=[])).group_challenges == []
    assert FeedbackRequest.model_validate(_request(personalChallenges=[])).personal_challenges == []
    with pytest.raises(ValidationError, match="nothing to give feedback on"):
        FeedbackRequest.model_validate(_request(personalChallenges=[], groupChallenges=[]))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("memberId", 0),
        ("memberId", -3),
        ("memberId", "abc"),
        ("memberId", None),
        ("personalChallenges", None),
        ("groupChallenges", "none"),
        ("requestId", ""),
        ("requestId", "has space"),
        ("requestId", "x" * 129),
        ("requestId", "team/7/week-24"),
        ("requestId", ".."),
    ],
)
def test_invalid_fields_are_named_in_the_error(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        FeedbackRequest.model_validate(_request(**{field: value}))
    assert field in {str(err["loc"][0]) for err in caught.value.errors()}


@pytest.mark.parametrize("field", ["memberId", "personalChallenges", "groupChallenges"])
def test_required_fields_must_be_present(field: str) -> None:
    body = _request()
    del body[field]
    with pytest.raises(ValidationError) as caught:
        FeedbackRequest.model_validate(body)
    assert [err["loc"][0] for err in caught.value.errors()] == [field]


def test_the_backend_own_queue_message_reads_as_a_job_without_request_id() -> None:
    job = FeedbackJob.model_validate_json(json.dumps(_request()))
    assert job.request_id is None
    assert job.schema_version == 1
    assert job.accepted_at is None


def test_a_job_queued_with_an_id_the_ingest_now_refuses_is_still_worked() -> None:
    """Queued before the request id rule, or published by the backend itself: SQS's rule."""
    job = FeedbackJob.model_validate({**_request(), "requestId": "team/7/week-24"})
    assert job.request_id == "team/7/week-24"


def test_job_round_trips_through_json_with_camel_case_keys() -> None:
    job = FeedbackJob.model_validate(
        {**_request(), "requestId": "req-1", "acceptedAt": "2025-06-16T10:00:00+00:00"}
    )
    wire = json.loads(job.model_dump_json())
    assert {"memberId", "requestId", "acceptedAt", "schemaVersion"} <= wire.keys()
    assert FeedbackJob.model_validate(wire) == job


def test_unknown_schema_version_is_refused() -> None:
    with pytest.raises(ValidationError):
        FeedbackJob.model_validate({**_request(), "schemaVersion": 2})


def test_result_has_what_the_backend_consumer_reads() -> None:
    result = FeedbackResult(
        member_id=42,
        content="잘했어요! 🎉",
        timestamp=datetime(2025, 6, 16, 10, 0),
        request_id="r1",
    )
    assert json.loads(result.model_dump_json()) == {
        "memberId": 42,
        "content": "잘했어요! 🎉",
        "status": "success",
        "timestamp": "2025-06-16T10:00:00",
        "requestId": "r1",
    }
    with pytest.raises(ValidationError):
        FeedbackResult(member_id=42, content="", timestamp=datetime(2025, 6, 16), request_id="r1")


def _notice(request_id: str, state: str) -> FailureNotice:
    return FailureNotice.model_validate(
        {
            "request_id": request_id,
            "member_id": 42,
            "state": state,
            "reason": "callback rejected the result: HTTP 404: ",
            "timestamp": datetime(2025, 6, 16, 10, 0),
        }
    )


def test_a_failure_notice_and_the_result_never_share_a_webhook_id() -> None:
    """One idempotency store by webhook-id at the backend: the notice under the result's id
    would make the backend refuse the result sent after it (409)."""
    result = FeedbackResult(
        member_id=42, content="잘했어요!", timestamp=datetime.now(), request_id="r1"
    )
    failed, expired = _notice("r1", "failed"), _notice("r1", "expired")

    assert result.webhook_id == "r1"  # the backend's idempotency key for results
    assert len({result.webhook_id, failed.webhook_id, expired.webhook_id}) == 3
    assert failed.webhook_id == _notice("r1", "failed").webhook_id  # a notice sent again
    assert failed.webhook_id.startswith("notice_")
    assert len(_notice("r" * 128, "failed").webhook_id) <= 128
    assert failed.webhook_id not in json.loads(failed.model_dump_json()).values()


def test_envelope_shape() -> None:
    assert Envelope(status=202, message="accepted", data={"requestId": "r"}).model_dump() == {
        "status": 202,
        "message": "accepted",
        "data": {"requestId": "r"},
    }
