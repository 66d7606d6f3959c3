"""Small pure pieces: backoff, Retry-After, URL joining, request ids, settings validation."""

import json
from datetime import UTC, datetime

import pytest
from feedback_worker.backoff import backoff_delay
from feedback_worker.delivery.callback import retry_after_seconds
from feedback_worker.errors import InvalidMessage
from feedback_worker.jobs import read_job
from feedback_worker.settings import WorkerSettings, join_url
from feedback_worker.source import QueueMessage
from pydantic import ValidationError

from tests.support.fakes import TEST_SECRET
from tests.support.records import weekly_record


def test_backoff_grows_with_the_attempt_and_stops_at_the_cap() -> None:
    for attempt, full in [(1, 10), (2, 20), (3, 40), (4, 80), (8, 600), (50, 600)]:
        delay = backoff_delay(attempt, base=10, cap=600)
        # Jitter takes off up to a quarter, never adds.
        assert 0.75 * full <= delay <= full


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Sun, 22 Nov 2026 01:00:30 GMT", 30.0),
        ("Sun, 22 Nov 2026 00:59:00 GMT", 0.0),  # in the past: retry now
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(header: str | None, seconds: float) -> None:
    now = datetime(2026, 11, 22, 1, 0, 0, tzinfo=UTC)

    assert retry_after_seconds(header, now) == seconds


@pytest.mark.parametrize(
    ("base", "path", "joined"),
    [
        ("http://backend:8080", "", "http://backend:8080"),
        (
            "http://backend:8080/",
            "/api/feedback/callback",
            "http://backend:8080/api/feedback/callback",
        ),
        ("http://backend:8080/api/", "feedback", "http://backend:8080/api/feedback"),
        ("http://backend:8080/api", "/", "http://backend:8080/api"),
    ],
)
def test_callback_url_and_path_join_with_one_slash(base: str, path: str, joined: str) -> None:
    assert join_url(base, path) == joined


def message(body: str, deduplication_id: str | None = None) -> QueueMessage:
    return QueueMessage(
        message_id="5fea7756-0ea4-451a-a703-a558b933e274",
        receipt_handle="receipt",
        body=body,
        receive_count=1,
        group_id="feedback",
        deduplication_id=deduplication_id,
        attributes={},
    )


def test_request_id_comes_from_the_job_then_the_dedup_id_then_the_message_id() -> None:
    with_id = json.dumps(weekly_record(3, "req-3"))
    without_id = json.dumps(weekly_record(3))

    assert read_job(message(with_id, "3-abc")).request_id == "req-3"
    assert read_job(message(without_id, "3-abc")).request_id == "3-abc"
    assert read_job(message(without_id)).request_id == "5fea7756-0ea4-451a-a703-a558b933e274"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "Invalid JSON"),
        ('{"memberId": 0, "personalChallenges": [], "groupChallenges": []}', "memberId"),
        ('{"memberId": 1}', "personalChallenges: Field required"),
    ],
)
def test_a_body_that_is_no_feedback_job_is_invalid_with_its_reason(body: str, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        read_job(message(body))


BASE_ENV = {"FEEDBACK_QUEUE_URL": "http://sqs/q.fifo", "LLM_MODEL": "m"}
CALLBACK = {"CALLBACK_URL": "http://backend", "CALLBACK_SECRET": TEST_SECRET}


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, "RESULT_QUEUE_URL and/or CALLBACK_URL"),
        ({"CALLBACK_URL": "http://backend"}, "CALLBACK_SECRET is required"),
        ({"CALLBACK_URL": "http://b", "CALLBACK_SECRET": "whsec_%%%"}, "not a Standard Webhooks"),
        ({"RESULT_QUEUE_URL": "http://sqs/r.fifo", "SQS_WAIT_SECONDS": "25"}, "SQS_WAIT_SECONDS"),
        (
            {"RESULT_QUEUE_URL": "http://sqs/r.fifo", "CALLBACK_FAILURE_PATH": "/failures"},
            "CALLBACK_FAILURE_PATH needs CALLBACK_URL",
        ),
        (
            {**CALLBACK, "CALLBACK_PATH": "/feedback", "CALLBACK_FAILURE_PATH": "feedback/"},
            "CALLBACK_FAILURE_PATH must differ from CALLBACK_PATH",
        ),
        ({**CALLBACK, "DELIVERY_RETRY_SECONDS": "43200"}, "DELIVERY_RETRY_SECONDS"),
        ({**CALLBACK, "CONTENT_MIN_CHARS": "500", "CONTENT_MAX_CHARS": "400"}, "CONTENT_MAX_CHARS"),
    ],
)
def test_settings_refuse_a_configuration_that_cannot_work(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    for name, value in {**BASE_ENV, **env}.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError) as error:
        WorkerSettings()

    assert problem.lower() in str(error.value).lower()


def test_settings_defaults_fit_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**BASE_ENV, "CALLBACK_URL": "http://b", "CALLBACK_SECRET": TEST_SECRET}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    settings = WorkerSettings()

    assert settings.llm_base_url == "http://127.0.0.1:8000/v1"
    assert settings.llm_temperature == 0.7
    assert settings.llm_max_tokens == 400
    assert settings.sqs_wait_seconds == 20
    assert settings.worker_concurrency == 32
    assert TEST_SECRET not in repr(settings)


def test_stop_strings_are_a_json_list_and_none_may_be_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {**BASE_ENV, "RESULT_QUEUE_URL": "http://sqs/r.fifo"}.items():
        monkeypatch.setenv(name, value)
    assert WorkerSettings().llm_stop == []

    monkeypatch.setenv("LLM_STOP", '["[기록]", "하나, 둘"]')
    assert WorkerSettings().llm_stop == ["[기록]", "하나, 둘"]

    monkeypatch.setenv("LLM_STOP", '["[기록]", ""]')
    with pytest.raises(ValidationError, match="llm_stop"):
        WorkerSettings()


@pytest.mark.parametrize(
    ("concurrency", "prefetch", "ahead", "held"),
    [("32", None, 8, 72), ("6", None, 2, 14), ("1", None, 1, 3), ("32", "0", 0, 64)],
)
def test_messages_received_ahead_default_to_a_quarter_of_the_concurrency(
    monkeypatch: pytest.MonkeyPatch,
    concurrency: str,
    prefetch: str | None,
    ahead: int,
    held: int,
) -> None:
    env = {**BASE_ENV, "RESULT_QUEUE_URL": "http://sqs/r.fifo", "WORKER_CONCURRENCY": concurrency}
    for name, value in {**env, **({"WORKER_PREFETCH": prefetch} if prefetch else {})}.items():
        monkeypatch.setenv(name, value)

    settings = WorkerSettings()

    assert settings.prefetch == ahead
    assert settings.most_held == held  # at the LLM + received ahead + being delivered
