"""API keys of the platform's HTTP APIs: `X-API-Key: <key>` or `Authorization: Bearer <key>`.

A setting holds them comma-separated; two keys are valid at once while a key is rotated
(add the new one, move the clients, remove the old one).
"""

import hmac
from collections.abc import Iterable
from typing import Any

from pydantic import SecretStr


def split_keys(value: Any) -> Any:
    """A `field_validator(mode="before")` body: an env var is one string; the keys in it are
    separated by commas (blanks ignored, so "a, b," is two keys and "" is none)."""
    if isinstance(value, str):
        return [key.strip() for key in value.split(",") if key.strip()]
    return value


def matches_any(presented: str, keys: Iterable[SecretStr]) -> bool:
    """Compares with every key, in constant time, without stopping at a match: how long it
    takes says nothing about which key, or how much of one, was right."""
    candidate = presented.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.get_secret_value().encode())
    return matched
