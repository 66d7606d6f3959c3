"""Logs as JSON lines on stdout, tied to traces, with secrets redacted.

Each line: `timestamp`, `level`, `logger`, `message`, `trace_id`, `span_id` (of the span current
when the line was written), `requestId`, `memberId` (from `extra=` or `log_context`), any other
`extra=` fields, and `exception` / `stack` when there is one.

Prompts and generated text are the member's data, not operational signals: log them only with
`debug_text`, which writes them at DEBUG and nowhere else.
"""

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

from opentelemetry import trace

from llm_common.telemetry.log_context import current_log_context
from llm_common.telemetry.redaction import RedactingFilter, Redactor, extra_fields

__all__ = ["JsonFormatter", "debug_text", "setup_logging"]

_CONTEXT_FIELDS = ("requestId", "memberId")
# At DEBUG these print request headers and signing material; their INFO is all we need.
_CHATTY_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3", "httpcore", "hpack")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_trace_fields(),
            **_context_fields(record),
            **_other_extra_fields(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def _trace_fields() -> dict[str, str | None]:
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {"trace_id": None, "span_id": None}
    return {
        "trace_id": trace.format_trace_id(span_context.trace_id),
        "span_id": trace.format_span_id(span_context.span_id),
    }


def _context_fields(record: logging.LogRecord) -> dict[str, object]:
    context = current_log_context()
    return {
        "requestId": getattr(record, "requestId", context.request_id),
        "memberId": getattr(record, "memberId", context.member_id),
    }


def _other_extra_fields(record: logging.LogRecord) -> dict[str, object]:
    return {
        name: value for name, value in extra_fields(record).items() if name not in _CONTEXT_FIELDS
    }


def setup_logging(level: str, secrets: Iterable[str] = (), stream: IO[str] | None = None) -> None:
    """Make the root logger write redacted JSON lines to `stream` (stdout) at `level` (idempotent).

    `secrets` are the configured secret values (see `secret_values(settings)`); values shaped like
    `whsec_…`, `sk-…`, `Bearer …` and URL passwords are redacted whatever the list says.
    Run uvicorn with `log_config=None` so its loggers reach this handler instead of their own.
    A command whose output owns stdout (a report, an export) passes `stream=sys.stderr`.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    root = logging.getLogger()
    # Replace console handlers (ours from an earlier call, or one that logging.basicConfig put
    # there) so no line is written twice; keep others, such as pytest's capture handler.
    for old in [old for old in root.handlers if type(old) is logging.StreamHandler]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
    logging.captureWarnings(True)


def debug_text(logger: logging.Logger, label: str, text: str) -> None:
    """Log a prompt or a generated text, at DEBUG only (never at INFO or above)."""
    logger.debug("%s: %s", label, text)
