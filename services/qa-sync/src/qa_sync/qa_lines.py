"""One line of a batch's output or error file → a QA pair, or the kind of bad line it is.

Output lines: {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}.
The body is a chat completion (`choices[0].message.content`) or, for a /v1/responses batch, a
response (`output[].content[].text` of its `message` items). The assistant's content is JSON
{"q": ..., "a": ...} or the older text "Q: ... A: ...".
A bad line is counted by kind and skipped: one line never fails a job. The kinds that only
several lines together reveal (a custom_id answered twice) are custom_ids.py's.
"""

import json
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class QaPair(BaseModel):
    question: str
    answer: str
    custom_id: str | None


class BadLine(StrEnum):
    MALFORMED_LINE = "malformed_line"
    """The line itself is not a JSON object."""
    REQUEST_ERROR = "request_error"
    """A request the provider reports as failed: an `error` object, or a response whose
    status_code is not 200. Error files hold both shapes (OpenAI's own lines are the second:
    `response.status_code` 500, `error: null`), so both are one kind, their codes counted."""
    NULL_RESPONSE = "null_response"
    """Neither an error nor a response."""
    NULL_CONTENT = "null_content"
    TRUNCATED = "truncated"
    """The content was cut off: finish_reason "length" (a response: status "incomplete" for
    max_output_tokens), whatever the text looks like, or a JSON object that never closes."""
    UNPARSEABLE = "unparseable"
    DUPLICATE_CUSTOM_ID = "duplicate_custom_id"
    """A pair equal to one kept for the same custom_id (custom_ids.py)."""
    CONFLICTING_CUSTOM_ID = "conflicting_custom_id"
    """A pair whose custom_id has another, different pair: neither is kept (custom_ids.py)."""


class LineStats(BaseModel):
    """What processing saw, line by line; stored in the registry and in the processed JSON."""

    lines: int = 0
    pairs: int = 0
    bad: dict[str, int] = Field(default_factory=dict)
    error_codes: dict[str, int] = Field(default_factory=dict)
    """The provider's error codes of failed requests (e.g. rate_limit_exceeded), counted."""

    def count_pair(self) -> None:
        self.lines += 1
        self.pairs += 1

    def count_bad(self, kind: BadLine, error_code: str | None = None) -> None:
        self.lines += 1
        self.bad[kind.value] = self.bad.get(kind.value, 0) + 1
        if error_code:
            self.error_codes[error_code] = self.error_codes.get(error_code, 0) + 1


class BadLineFound(Exception):
    def __init__(self, kind: BadLine, error_code: str | None = None) -> None:
        super().__init__(kind.value)
        self.kind = kind
        self.error_code = error_code


# Full-width colons (\uff1a) come from Korean input methods.
_TEXT_PAIR = re.compile(
    r"^\s*Q\s*[:\uff1a]\s*(?P<q>.+?)\s*\n?\s*A\s*[:\uff1a]\s*(?P<a>.+?)\s*$", re.DOTALL
)
_CODE_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(?P<body>.*?)\n?```$", re.DOTALL)


def read_line(line: bytes) -> QaPair:
    """The pair in one result line; raises `BadLineFound` with the kind of bad line."""
    record = _json_object(line)
    custom_id = record.get("custom_id")
    if record.get("error"):
        raise BadLineFound(BadLine.REQUEST_ERROR, _error_code(record["error"]))
    response = record.get("response")
    if not isinstance(response, dict):
        raise BadLineFound(BadLine.NULL_RESPONSE)
    body = response.get("body")
    if response.get("status_code") != 200:
        raise BadLineFound(BadLine.REQUEST_ERROR, _error_code(_get(body, "error")))
    content, cut_off = _assistant_text(body)
    if not isinstance(content, str) or not content.strip():
        raise BadLineFound(BadLine.NULL_CONTENT)
    if cut_off:
        # Cut by max_tokens: even text that still parses lost the end of its answer, and a
        # fine-tuning set must not learn answers that stop mid-sentence.
        raise BadLineFound(BadLine.TRUNCATED)
    question, answer = parse_content(content)
    return QaPair(question=question, answer=answer, custom_id=_str_or_none(custom_id))


def _assistant_text(body: Any) -> tuple[Any, bool]:
    """(the assistant's text, whether it was cut off by the token limit), from the body of a
    /v1/chat/completions or a /v1/responses request: the Batch API runs both."""
    if _get(body, "object") == "response":
        texts = [
            _get(part, "text")
            for item in _list(_get(body, "output"))
            if _get(item, "type") == "message"
            for part in _list(_get(item, "content"))
            if _get(part, "type") == "output_text"
        ]
        text = "".join(t for t in texts if isinstance(t, str)) if texts else None
        reason = _get(_get(body, "incomplete_details"), "reason")
        return text, _get(body, "status") == "incomplete" and reason == "max_output_tokens"
    choice = _get(_get(body, "choices"), 0)
    return _get(_get(choice, "message"), "content"), _get(choice, "finish_reason") == "length"


def parse_content(content: str) -> tuple[str, str]:
    """(question, answer) from JSON {"q","a"} or "Q: ... A: ..." text."""
    text = content.strip()
    if fenced := _CODE_FENCE.match(text):
        text = fenced.group("body").strip()
    if text.startswith("{"):
        return _json_pair(text)
    if match := _TEXT_PAIR.match(text):
        return match.group("q"), match.group("a")
    raise BadLineFound(BadLine.UNPARSEABLE)


def _json_pair(text: str) -> tuple[str, str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        # An object that never closes was cut off; one that closes but does not parse is junk.
        cut_off = not text.endswith("}")
        raise BadLineFound(BadLine.TRUNCATED if cut_off else BadLine.UNPARSEABLE) from None
    question, answer = _get(value, "q"), _get(value, "a")
    if (
        isinstance(question, str)
        and isinstance(answer, str)
        and question.strip()
        and answer.strip()
    ):
        return question.strip(), answer.strip()
    raise BadLineFound(BadLine.UNPARSEABLE)


def _json_object(line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadLineFound(BadLine.MALFORMED_LINE) from None
    if not isinstance(record, dict):
        raise BadLineFound(BadLine.MALFORMED_LINE)
    return record


def _get(container: Any, key: str | int) -> Any:
    """container[key], or None where the shape is not what a well-formed line has."""
    if isinstance(key, int):
        return container[key] if isinstance(container, list) and len(container) > key else None
    return container.get(key) if isinstance(container, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _error_code(error: Any) -> str | None:
    return _str_or_none(_get(error, "code")) or ("unknown" if error else None)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
