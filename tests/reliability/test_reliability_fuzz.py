"""Bad input at POST /ai/feedback: thousands of generated bodies (near the contract and hostile)
and the classic abuses. Never a 5xx, always the envelope."""

import json
import secrets
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from devstack.queues import FeedbackQueues
from fastapi.testclient import TestClient
from feedback_ingest.app import create_app
from feedback_ingest.settings import IngestSettings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from llm_common.contracts import REQUEST_ID_PATTERN

from tests.support.reliability import Figures

SCENARIO = "6. Bad input"
MAX_BODY_BYTES = 262_144
API_KEY = secrets.token_urlsafe(24)

# Values a field may take: right, wrong type, out of range, absurd.
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
date_like = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
    st.lists(st.integers(-(2**40), 2**40), min_size=0, max_size=9),
    st.lists(st.integers(0, 3000), min_size=5, max_size=7),
    st.text(max_size=40),
    anything,
)
maybe_int = st.one_of(st.integers(-(2**70), 2**70), st.integers(1, 2**63 - 1), anything)
maybe_bool = st.one_of(st.booleans(), anything)
maybe_title = st.one_of(st.none(), st.text(max_size=600), anything)


def _optional(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


submission = _optional({"isSuccess": maybe_bool, "submittedAt": date_like})
personal = _optional({"id": maybe_int, "title": maybe_title, "isSuccess": maybe_bool})
group = _optional(
    {
        "id": maybe_int,
        "title": maybe_title,
        "startDate": date_like,
        "endDate": date_like,
        "submissions": st.one_of(st.lists(submission, max_size=5), anything),
    }
)
near_contract = _optional(
    {
        "memberId": maybe_int,
        "personalChallenges": st.one_of(st.lists(personal, max_size=5), anything),
        "groupChallenges": st.one_of(st.lists(group, max_size=5), anything),
        "submissions": st.one_of(st.lists(submission, max_size=3), anything),
        "requestId": st.one_of(st.text(max_size=140), anything),
    }
)
valid_date = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).flatmap(
    lambda d: st.sampled_from(
        [
            d.isoformat(),
            d.isoformat(sep=" "),
            [d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond * 1000],
        ]
    )
)
valid_title = st.none() | st.text(max_size=60)
valid_week = st.fixed_dictionaries(
    {
        "memberId": st.integers(1, 2**63 - 1),
        "personalChallenges": st.lists(
            st.fixed_dictionaries(
                {"isSuccess": st.booleans()},
                optional={"id": st.none() | st.integers(1, 10**9), "title": valid_title},
            ),
            min_size=1,
            max_size=5,
        ),
        "groupChallenges": st.lists(
            st.fixed_dictionaries(
                {
                    "title": valid_title,
                    "startDate": valid_date,
                    "endDate": valid_date,
                    "submissions": st.lists(
                        st.fixed_dictionaries(
                            {"isSuccess": st.booleans(), "submittedAt": valid_date}
                        ),
                        max_size=5,
                    ),
                }
            ),
            max_size=3,
        ),
    },
    optional={"requestId": st.from_regex(REQUEST_ID_PATTERN, fullmatch=True)},
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "APPLICATION/JSON",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "",
    ]
) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@pytest.fixture
def client(feedback_queues: FeedbackQueues) -> Iterator[TestClient]:
    settings = IngestSettings(
        feedback_queue_url=feedback_queues.requests,
        ingest_api_keys=API_KEY,
        max_body_bytes=MAX_BODY_BYTES,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["X-API-Key"] = API_KEY
        yield client


def assert_envelope(answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text[:500]
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body.keys() == {"status", "message", "data"}
    assert body["status"] == answer.status_code
    assert isinstance(body["message"], str)
    assert body["data"] is None or isinstance(body["data"], dict)


FUZZ = hypothesis_settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.slow
def test_generated_bodies_never_get_a_5xx_and_always_the_envelope(
    client: TestClient, figures: Figures, caplog: pytest.LogCaptureFixture
) -> None:
    """Hypothesis: valid weeks, near-contract JSON, any JSON, raw bytes, any content type."""
    statuses: Counter[int] = Counter()

    def post(content: bytes, content_type: str = "application/json") -> None:
        answer = client.post(
            "/ai/feedback", content=content, headers={"content-type": content_type}
        )
        statuses[answer.status_code] += 1
        assert_envelope(answer)

    @hypothesis_settings(FUZZ, max_examples=300)
    @given(valid_week)
    def valid_weeks(body: dict[str, Any]) -> None:
        if "requestId" in body:
            # This ingest has no request store: an id it takes must be the member's (jobs.py).
            body["requestId"] = f"{body['memberId']}-{body['requestId']}"[:128]
        post(json.dumps(body, ensure_ascii=False).encode())

    @hypothesis_settings(FUZZ, max_examples=2200)
    @given(near_contract)
    def near_the_contract(body: dict[str, Any]) -> None:
        post(json.dumps(body).encode())  # NaN and Infinity included: Python writes them

    @hypothesis_settings(FUZZ, max_examples=800)
    @given(anything)
    def any_json(body: Any) -> None:
        post(json.dumps(body).encode())

    @hypothesis_settings(FUZZ, max_examples=300)
    @given(st.binary(max_size=300))
    def any_bytes(body: bytes) -> None:
        post(body)

    @hypothesis_settings(FUZZ, max_examples=300)
    @given(content_types, near_contract)
    def any_content_type(content_type: str, body: dict[str, Any]) -> None:
        post(json.dumps(body).encode(), content_type)

    for run in (valid_weeks, near_the_contract, any_json, any_bytes, any_content_type):
        run()

    figures["generated cases"] = sum(statuses.values())
    figures["answers"] = " ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
    figures["5xx"] = sum(n for status, n in statuses.items() if status >= 500)
    leaks = figures.scan_for_secrets([caplog.text], [API_KEY])
    assert figures["5xx"] == 0
    assert statuses[202] >= 280, "the valid weeks were not accepted"
    assert not leaks


def _week(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "memberId": 7,
        "personalChallenges": [{"id": 1, "title": "산책", "isSuccess": True}],
        "groupChallenges": [
            {
                "id": 2,
                "title": "러닝",
                "startDate": [2025, 6, 9, 0, 0],
                "endDate": "2025-06-15T23:59:59",
                "submissions": [{"isSuccess": True, "submittedAt": "2025-06-10T07:00:00"}],
            }
        ],
    }
    return {**body, **changes}


def _dated(value: Any) -> bytes:
    group = {**_week()["groupChallenges"][0], "startDate": value}
    return json.dumps(_week(groupChallenges=[group])).encode()


def _oversized_chunks() -> Iterator[bytes]:
    yield b'{"memberId": 1, "personalChallenges": ['
    for _ in range(MAX_BODY_BYTES // 1000 + 2):
        yield b'{"isSuccess": true, "title": "' + b"x" * 960 + b'"},'
    yield b"]}"


def _many_submissions(challenges: int, submissions: int) -> bytes:
    """Within MAX_BODY_BYTES as arrays, over SQS's limit once the dates are ISO strings."""
    one = {"isSuccess": True, "submittedAt": [2025, 6, 10, 7, 0]}
    group = {"title": "러닝", "submissions": [one] * submissions}
    return json.dumps(_week(groupChallenges=[group] * challenges)).encode()


ABUSES: dict[str, tuple[dict[str, Any], set[int]]] = {
    "oversized, Content-Length": ({"content": b"{" + b" " * MAX_BODY_BYTES + b"}"}, {413}),
    "oversized, chunked": ({"content": _oversized_chunks()}, {413}),
    "text/plain": ({"content": json.dumps(_week()).encode(), "ct": "text/plain"}, {400}),
    "no content type": ({"content": json.dumps(_week()).encode(), "ct": ""}, {400}),
    "latin-1 charset": (
        {"content": json.dumps(_week()).encode(), "ct": "application/json; charset=latin-1"},
        {400},
    ),
    "form body": ({"content": b"memberId=1", "ct": "application/x-www-form-urlencoded"}, {400}),
    "deep nesting 10k": ({"content": b"[" * 10_000 + b"]" * 10_000}, {400}),
    "deep nesting in a field": (
        {"content": b'{"memberId": 1, "personalChallenges": ' + b"[" * 5000 + b"]" * 5000 + b"}"},
        {400},
    ),
    "100k-element array": (
        {"content": json.dumps(_week(personalChallenges=[{}] * 60_000)).encode()},
        {400, 413},
    ),
    "5 challenges x 1000 submissions": ({"content": _many_submissions(5, 1000)}, {413}),
    "invalid UTF-8": ({"content": b'{"memberId": 1, "x": "\xff\xfe\xc3\x28"}'}, {400}),
    "lone surrogate escape": ({"content": b'{"memberId": 1, "requestId": "\\ud800"}'}, {400}),
    "UTF-16 body": ({"content": json.dumps(_week()).encode("utf-16")}, {400}),
    "NaN memberId": ({"content": b'{"memberId": NaN}'}, {400}),
    "memberId 10^200": ({"content": json.dumps(_week(memberId=10**200)).encode()}, {400}),
    "memberId 2^63": ({"content": json.dumps(_week(memberId=2**63)).encode()}, {400}),
    "memberId 1e308": ({"content": b'{"memberId": 1e308}'}, {400}),
    "year 99999": ({"content": _dated([99999, 1, 1, 0, 0])}, {400}),
    "month 13": ({"content": _dated([2025, 13, 1, 0, 0])}, {400}),
    "hour 25": ({"content": _dated("2025-06-13T25:00:00")}, {400}),
    "nanos 10^12": ({"content": _dated([2025, 6, 13, 13, 8, 16, 10**12])}, {400}),
    "negative nanos": ({"content": _dated([2025, 6, 13, 13, 8, 16, -1])}, {400}),
    "year 0": ({"content": _dated("0000-01-01T00:00:00")}, {400}),
    "year -1 array": ({"content": _dated([-1, 1, 1, 0, 0])}, {400}),
    "3-element date": ({"content": _dated([2025, 6, 13])}, {400}),
    "10^30 in a date": ({"content": _dated([10**30, 1, 1, 0, 0])}, {400}),
    "float date parts": ({"content": _dated([2025.5, 6, 13, 0, 0])}, {400}),
    "date with a zone": ({"content": _dated("2025-06-13T13:08:16+09:00")}, {202, 400}),
    "date 9999-12-31 max": ({"content": _dated("9999-12-31T23:59:59.999999")}, {202}),
    "date 10 fraction digits": ({"content": _dated("2025-06-13T13:08:16.1234567891")}, {202, 400}),
    "empty body": ({"content": b""}, {400}),
    "JSON null": ({"content": b"null"}, {400}),
    "title 10k chars": (
        {"content": json.dumps(_week(personalChallenges=[{"title": "가" * 10_000}])).encode()},
        {400},
    ),
}


@pytest.mark.parametrize("name", list(ABUSES))
def test_abusive_bodies_get_a_4xx_envelope(name: str, client: TestClient, figures: Figures) -> None:
    """Oversized, wrong content type, deep nesting, huge arrays, bad UTF-8, absurd dates."""
    request, expected = ABUSES[name]
    content_type = request.get("ct", "application/json")
    headers = {"content-type": content_type} if content_type else {}
    answer = client.post("/ai/feedback", content=request["content"], headers=headers)

    figures[name] = answer.status_code
    assert_envelope(answer)
    assert answer.status_code in expected, answer.text[:300]
    # An error answer names what is wrong without echoing the abuse back.
    assert len(answer.content) < 20_000
