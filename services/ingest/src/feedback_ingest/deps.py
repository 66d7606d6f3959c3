"""Typed dependencies: what a route needs, taken from the app it runs in."""

from typing import Annotated

from fastapi import Depends, Request
from llm_common.requests_store import RequestStore

from feedback_ingest.queue import FeedbackQueue
from feedback_ingest.readiness import ReadinessProbe
from feedback_ingest.settings import IngestSettings


def get_settings(request: Request) -> IngestSettings:
    settings: IngestSettings = request.app.state.settings
    return settings


def get_queue(request: Request) -> FeedbackQueue:
    queue: FeedbackQueue = request.app.state.queue
    return queue


def get_store(request: Request) -> RequestStore | None:
    store: RequestStore | None = request.app.state.store
    return store


def get_readiness(request: Request) -> ReadinessProbe:
    readiness: ReadinessProbe = request.app.state.readiness
    return readiness


SettingsDep = Annotated[IngestSettings, Depends(get_settings)]
QueueDep = Annotated[FeedbackQueue, Depends(get_queue)]
StoreDep = Annotated[RequestStore | None, Depends(get_store)]
ReadinessDep = Annotated[ReadinessProbe, Depends(get_readiness)]
