"""The app factory: tests and `python -m feedback_ingest` build the same app from settings."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from llm_common.requests_store import RequestStore
from llm_common.telemetry.web import instrument_fastapi, mount_metrics

from feedback_ingest.errors import install_error_handlers
from feedback_ingest.openapi import document_request_body
from feedback_ingest.queue import FeedbackQueue
from feedback_ingest.queue_depth import QueueDepthPoller
from feedback_ingest.readiness import ReadinessProbe
from feedback_ingest.routes import feedback, health
from feedback_ingest.settings import IngestSettings

logger = logging.getLogger(__name__)

SQS_CONCURRENCY = 32
"""SQS calls in flight at once per process (threads, and connections in the client's pool)."""


def create_app(settings: IngestSettings) -> FastAPI:
    app = FastAPI(
        title="feedback-ingest",
        version=version("feedback-ingest"),
        description="Accepts the backend's weekly records and queues them for LLM feedback.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.include_router(feedback.router)
    app.include_router(health.router)
    install_error_handlers(app, settings.queue_retry_after_seconds)
    document_request_body(app)
    instrument_fastapi(app)
    mount_metrics(app)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One SQS client per app, made at start-up: clients are thread-safe and hold the
    # connection pool, so requests share them.
    settings: IngestSettings = app.state.settings
    queue = FeedbackQueue(settings.feedback_queue_url, settings.aws_region, SQS_CONCURRENCY)
    app.state.queue = queue
    # The table is a cluster resource (k8s/cluster/request-store.yaml): nothing is created here.
    store = (
        RequestStore(
            settings.request_table_name,
            settings.aws_region,
            settings.request_store_ttl_seconds,
            max_pool_connections=SQS_CONCURRENCY,
        )
        if settings.request_table_name
        else None
    )
    app.state.store = store
    app.state.readiness = ReadinessProbe(queue, store)
    if not settings.ingest_api_keys:
        logger.warning("INGEST_API_KEYS is empty: /ai/feedback answers 503 until it is set")
    try:
        async with _queue_depth(settings):
            yield
    finally:
        queue.close()
        if store is not None:
            store.close()


@asynccontextmanager
async def _queue_depth(settings: IngestSettings) -> AsyncIterator[None]:
    """Poll the queues' depth for /metrics while the app runs (a plain task, not a task group:
    a lifespan may be entered and left from different tasks, as ASGI test clients do)."""
    if settings.queue_depth_interval_seconds == 0:
        yield
        return
    poller = QueueDepthPoller(
        settings.feedback_queue_url, settings.aws_region, settings.queue_depth_interval_seconds
    )
    polling = asyncio.create_task(poller.run())
    try:
        yield
    finally:
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        poller.close()
