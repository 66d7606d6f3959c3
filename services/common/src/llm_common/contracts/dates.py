"""Java `LocalDateTime` as the Spring backend serialises it.

Jackson writes a `LocalDateTime` either as an ISO-8601 string or, with
`WRITE_DATES_AS_TIMESTAMPS` on, as an array `[y, M, d, H, m(, s(, nanos))]` where trailing
zero seconds are omitted and the seventh element is *nanoseconds*.
"""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_NANOS_PER_MICRO = 1_000
_MAX_NANOS = 999_999_999


def parse_local_datetime(value: Any) -> datetime:
    """Accept every shape the backend sends and return a naive `datetime`."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = _from_iso_string(value)
    elif isinstance(value, list | tuple):
        parsed = _from_jackson_array(value)
    else:
        raise ValueError("expected an ISO-8601 string or a [y,M,d,H,m(,s(,nanos))] array")
    if parsed.tzinfo is not None:
        raise ValueError("a LocalDateTime carries no zone offset")
    return parsed


def _from_iso_string(text: str) -> datetime:
    try:
        # Python 3.11 accepts both "T" and a space as the separator, and 1-6 fraction digits.
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO-8601 local date-time: {text[:40]!r}") from None


def _from_jackson_array(parts: list[Any] | tuple[Any, ...]) -> datetime:
    if not 5 <= len(parts) <= 7:
        raise ValueError("a date-time array has 5, 6 or 7 elements: [y,M,d,H,m(,s(,nanos))]")
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in parts):
        raise ValueError("every element of a date-time array must be an integer")
    year, month, day, hour, minute, *rest = parts
    second = rest[0] if rest else 0
    nanos = rest[1] if len(rest) == 2 else 0
    if not 0 <= nanos <= _MAX_NANOS:
        raise ValueError("the 7th element is nanoseconds: 0..999999999")
    # Python keeps microseconds; nanoseconds below that have no representation and are dropped.
    try:
        return datetime(year, month, day, hour, minute, second, nanos // _NANOS_PER_MICRO)
    except OverflowError:
        # An element too large for a C int (10**30, say): as invalid as month 13, not a crash.
        raise ValueError("a date-time array element is out of range") from None


_JSON_SCHEMA = {
    "anyOf": [
        {"type": "string", "description": "ISO-8601 without zone, 'T' or space"},
        {
            "type": "array",
            "items": {"type": "integer"},
            "minItems": 5,
            "maxItems": 7,
            "description": "Jackson: [y,M,d,H,m(,s(,nanoseconds))]",
        },
    ],
    "examples": ["2025-06-13T13:08:16.710986", [2025, 6, 13, 13, 8, 16, 710986000]],
}

LocalDateTime = Annotated[
    datetime,
    BeforeValidator(parse_local_datetime),
    PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema(_JSON_SCHEMA, mode="validation"),
]
"""A zone-less date-time; validated from any backend shape, serialised as an ISO string."""
