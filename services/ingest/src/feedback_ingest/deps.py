"""Typed dependencies: what a route needs, taken from the app it runs in."""

from typing import Annotated

from fastapi import Depends
from llm_common.api_keys import api_key_guard
from llm_common.app_state import app_state
from llm_common.requests_store import RequestStore
from pydantic import SecretStr

from feedback_ingest.queue import FeedbackQueue
from feedback_ingest.readiness import ReadinessProbe
from feedback_ingest.settings import IngestSettings

get_settings = app_state("settings")
get_queue = app_state("queue")
get_store = app_state("store")
get_readiness = app_state("readiness")

SettingsDep = Annotated[IngestSettings, Depends(get_settings)]
QueueDep = Annotated[FeedbackQueue, Depends(get_queue)]
StoreDep = Annotated[RequestStore | None, Depends(get_store)]
ReadinessDep = Annotated[ReadinessProbe, Depends(get_readiness)]


def _ingest_api_keys(settings: SettingsDep) -> list[SecretStr]:
    return settings.ingest_api_keys


require_api_key = api_key_guard("INGEST_API_KEYS", _ingest_api_keys)
"""Both feedback routes take the platform's API key (llm_common/api_keys.py)."""
