"""Log lines are JSON tied to the trace and the request, and never show a configured secret."""

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from llm_common.settings import ServiceSettings
from llm_common.telemetry import (
    REDACTED,
    debug_text,
    log_context,
    secret_values,
    setup_logging,
)
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr

CALLBACK_SECRET = "whsec_c2VjcmV0LWNhbGxiYWNrLWtleS0wMTIzNDU2Nzg5YWI="
LLM_API_KEY = "local-llm-key-7f3a9c"
DB_PASSWORD = 'pa"ss\\word'  # quotes and backslashes are escaped in JSON
SECRETS = (CALLBACK_SECRET, LLM_API_KEY, DB_PASSWORD)

log = logging.getLogger("tests.telemetry")


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_lines_carry_trace_span_request_and_member(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")
    tracer = TracerProvider().get_tracer(__name__)

    with tracer.start_as_current_span("process") as span, log_context(request_id="req-1"):
        with log_context(member_id=42):
            log.info("delivered %s", "ok", extra={"attempt": 2})
        log.warning("outside the member block")

    first, second = _lines(capsys)
    context = span.get_span_context()
    assert first == {
        "timestamp": first["timestamp"],
        "level": "INFO",
        "logger": "tests.telemetry",
        "message": "delivered ok",
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "requestId": "req-1",
        "memberId": 42,
        "attempt": 2,
    }
    assert (second["requestId"], second["memberId"]) == ("req-1", None)


def test_extra_fields_name_the_request_without_a_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO")

    log.info("accepted", extra={"requestId": "req-9", "memberId": 9})
    log.info("no request here")

    tagged, untagged = _lines(capsys)
    assert (tagged["requestId"], tagged["memberId"]) == ("req-9", 9)
    assert (untagged["requestId"], untagged["trace_id"], untagged["span_id"]) == (None,) * 3


def _log_secrets_every_way() -> None:
    log.info("callback secret is %s", CALLBACK_SECRET)
    log.info(f"api key {LLM_API_KEY} in the message itself")
    log.info("settings: %r", {"password": DB_PASSWORD, "key": LLM_API_KEY})
    log.info("request", extra={"headers": {"Authorization": f"Bearer {LLM_API_KEY}"}})
    log.info("dsn %s", f"postgresql://feedback:{DB_PASSWORD}@db:5432/feedback")
    try:
        raise RuntimeError(f"signing failed with {CALLBACK_SECRET}")
    except RuntimeError:
        log.exception("callback failed")
    log.info("stack", stack_info=True, extra={"key": LLM_API_KEY})


def test_configured_secrets_never_appear_in_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("DEBUG", SECRETS)

    _log_secrets_every_way()

    output = capsys.readouterr().out
    assert len(output.splitlines()) == 7
    for secret in SECRETS:
        for spelling in (secret, repr(secret)[1:-1]):
            assert spelling not in output
            assert json.dumps(spelling)[1:-1] not in output
    assert REDACTED in output


def test_secret_shapes_are_redacted_even_when_not_configured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO")
    openai_key = "sk-proj-" + "A1b2C3d4" * 4
    bearer = "eyJhbGciOiJIUzI1NiJ9.payload.sig"

    log.info("calling with %s and %s", openai_key, f"Authorization: Bearer {bearer}")
    log.info("webhook secret %s", CALLBACK_SECRET)
    log.info("the task-id and sk-short are not secrets")

    first, second, third = (line["message"] for line in _lines(capsys))
    assert first == f"calling with {REDACTED} and Authorization: Bearer {REDACTED}"
    assert second == f"webhook secret {REDACTED}"
    assert third == "the task-id and sk-short are not secrets"


def test_secret_values_are_the_settings_secret_fields() -> None:
    class Settings(ServiceSettings):
        callback_secret: SecretStr = SecretStr(CALLBACK_SECRET)
        llm_api_key: SecretStr | None = None
        callback_url: str = "http://backend/ai"

    assert secret_values(Settings()) == [CALLBACK_SECRET]


def test_prompts_and_generated_text_only_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")
    debug_text(log, "prompt", "이번 주 챌린지를 요약해 줘")
    assert capsys.readouterr().out == ""

    setup_logging("DEBUG")
    debug_text(log, "prompt", "이번 주 챌린지를 요약해 줘")
    [line] = _lines(capsys)
    assert line["level"] == "DEBUG"
    assert line["message"] == "prompt: 이번 주 챌린지를 요약해 줘"


def test_library_debug_chatter_stays_out_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("DEBUG")

    logging.getLogger("botocore.endpoint").debug("Sending http request: <AWSPreparedRequest>")
    log.debug("ours")

    assert [line["logger"] for line in _lines(capsys)] == ["tests.telemetry"]


def test_a_bad_format_call_still_logs_instead_of_raising(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO", SECRETS)
    # Only our handler, as in production: pytest's own capture handler would raise first.
    alone = logging.getLogger("tests.telemetry.alone")
    alone.propagate = False
    alone.handlers = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]

    alone.info("two placeholders %s %s", LLM_API_KEY)

    [line] = _lines(capsys)
    assert LLM_API_KEY not in line["message"]
    assert line["message"].startswith("two placeholders")


def test_a_command_can_send_its_log_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", stream=sys.stderr)
    log.info("report written")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["message"] == "report written"
