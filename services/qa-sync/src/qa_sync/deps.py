"""Typed dependencies: what a route needs, taken from the app it runs in (`create_app` puts
them on `app.state`)."""

from typing import Annotated

from fastapi import Depends
from llm_common.api_keys import api_key_guard
from llm_common.app_state import app_state
from pydantic import SecretStr

from qa_sync.background import BackgroundWork
from qa_sync.components import Components

get_components = app_state("components")
get_work = app_state("work")

ComponentsDep = Annotated[Components, Depends(get_components)]
WorkDep = Annotated[BackgroundWork, Depends(get_work)]


def _qa_sync_api_keys(components: ComponentsDep) -> list[SecretStr]:
    return components.settings.qa_sync_api_keys


require_api_key = api_key_guard("QA_SYNC_API_KEYS", _qa_sync_api_keys)
"""The job and QA-pair APIs return an influencer's data: the platform's API key
(llm_common/api_keys.py)."""
