"""API keys: `X-API-Key: <key>` or `Authorization: Bearer <key>`, when any are configured."""

from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from llm_common.api_keys import matches_any

from feedback_ingest.deps import SettingsDep
from feedback_ingest.errors import NotAuthenticated

# auto_error=False: a missing key is answered by `require_api_key`, in the envelope; the
# schemes are declared so that the OpenAPI document shows both ways to authenticate.
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
bearer = HTTPBearer(auto_error=False)


async def require_api_key(
    settings: SettingsDep,
    api_key: Annotated[str | None, Security(api_key_header)],
    authorization: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    if not settings.ingest_api_keys:
        return
    presented = api_key if api_key is not None else _bearer_token(authorization)
    if not presented or not matches_any(presented, settings.ingest_api_keys):
        raise NotAuthenticated


def _bearer_token(authorization: HTTPAuthorizationCredentials | None) -> str | None:
    return authorization.credentials if authorization is not None else None
