"""Typed dependencies: what a route needs, taken from the app it runs in (`create_app` puts
them on `app.state`)."""

from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from llm_common.api_keys import matches_any
from llm_common.app_state import app_state
from starlette.exceptions import HTTPException

from qa_sync.background import BackgroundWork
from qa_sync.components import Components

get_components = app_state("components")
get_work = app_state("work")

ComponentsDep = Annotated[Components, Depends(get_components)]
WorkDep = Annotated[BackgroundWork, Depends(get_work)]

# auto_error=False: a missing key is answered in the envelope; the schemes are declared so that
# the OpenAPI document shows both ways to authenticate.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def require_api_key(
    components: ComponentsDep,
    api_key: Annotated[str | None, Security(_api_key_header)],
    authorization: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """The job APIs return an influencer's data: without QA_SYNC_API_KEYS they are closed."""
    keys = components.settings.qa_sync_api_keys
    if not keys:
        raise HTTPException(503, "QA_SYNC_API_KEYS is not set: the job APIs are closed")
    presented = api_key if api_key is not None else (authorization and authorization.credentials)
    if not presented or not matches_any(presented, keys):
        raise HTTPException(401, "missing or invalid API key", {"WWW-Authenticate": "Bearer"})
