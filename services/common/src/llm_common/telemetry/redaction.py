"""Keep secrets out of log lines: configured values and the shapes secrets usually have."""

import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote

from pydantic import BaseModel, SecretStr

__all__ = ["REDACTED", "RedactingFilter", "Redactor", "extra_fields", "secret_values"]

REDACTED = "[REDACTED]"

# (pattern, replacement): the replacement keeps the part that tells a reader what was there.
_SECRET_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"whsec_[A-Za-z0-9+/=]+"), REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), REDACTED),
    (re.compile(r"(\bBearer\s+)[^\s'\",;]+", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    # user:password@ in connection URLs (DATABASE_URL and the like)
    (re.compile(r"(://[^/\s:@]+:)[^/\s@]+(@)"), rf"\g<1>{REDACTED}\g<2>"),
)

# LogRecord's own attributes; everything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class Redactor:
    """Replaces every configured secret, and anything shaped like one, with `[REDACTED]`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        variants = {variant for secret in secrets if secret for variant in _spellings(secret)}
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(variants, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        for pattern, replacement in _SECRET_SHAPES:
            text = pattern.sub(replacement, text)
        return text


def _spellings(secret: str) -> set[str]:
    # How a secret can show up in a message: as is, inside a repr (`%r`, a dict or exception
    # printed), escaped inside a JSON string, URL-encoded.
    return {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
    }


class RedactingFilter(logging.Filter):
    """A handler filter that redacts a record before any formatter sees it.

    The message is rendered with its args and redacted; the traceback and stack are rendered and
    redacted too; `extra=` values that are not plain numbers become redacted strings.
    """

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redact(_rendered_message(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        for name, value in extra_fields(record).items():
            if not _is_plain_number(value):
                setattr(record, name, self._redact(str(value)))
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields a record got from `extra=` (everything that is not a LogRecord attribute)."""
    return {name: value for name, value in vars(record).items() if name not in _RECORD_ATTRIBUTES}


def _rendered_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):
        # Bad format args must not make the log call itself raise from inside the filter.
        return f"{record.msg!s} {record.args!r}"


def _is_plain_number(value: object) -> bool:
    return value is None or isinstance(value, int | float)


def secret_values(settings: BaseModel) -> list[str]:
    """Every `SecretStr` value in `settings` (nested models included): the secrets to redact."""
    values: list[str] = []
    for value in vars(settings).values():
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            values.extend(secret_values(value))
    return values
