"""API keys of the platform's HTTP APIs: `X-API-Key: <key>` or `Authorization: Bearer <key>`.

One rule for every API that returns or accepts a member's data: it answers only a configured
key, and with no key configured it is closed (503, naming the setting), never open. A Secret
forgotten at install time must not publish members' records: the service still starts, its
probes and `/metrics` answer, and the first call says what to set.

A setting holds the keys comma-separated; two keys are valid at once while a key is rotated
(add the new one, move the clients, remove the old one).
"""

import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.exceptions import HTTPException

# auto_error=False: a missing key is answered by the guard, in the envelope; the schemes are
# declared so that the OpenAPI document shows both ways to authenticate.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


class ApiKeysNotSet(HTTPException):
    """No key is configured: the API is closed until the setting is."""

    def __init__(self, setting: str) -> None:
        super().__init__(503, f"{setting} is not set: this API is closed")


class ApiKeyRejected(HTTPException):
    """The call presented no key, or one that is not configured."""

    def __init__(self) -> None:
        super().__init__(401, "missing or invalid API key", {"WWW-Authenticate": "Bearer"})


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


def api_key_guard(
    setting: str, configured_keys: Callable[..., Sequence[SecretStr]]
) -> Callable[..., None]:
    """The dependency a router declares: `configured_keys` is the service's own typed
    dependency for the keys of `setting` (the env var named in the 503)."""

    def require_api_key(
        keys: Annotated[Sequence[SecretStr], Depends(configured_keys)],
        api_key: Annotated[str | None, Security(_api_key_header)],
        authorization: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> None:
        if not keys:
            raise ApiKeysNotSet(setting)
        presented = api_key if api_key is not None else _credentials(authorization)
        if not presented or not matches_any(presented, keys):
            raise ApiKeyRejected

    return require_api_key


def _credentials(authorization: HTTPAuthorizationCredentials | None) -> str | None:
    return authorization.credentials if authorization is not None else None
