"""Ingest under test: the real app, in process, talking to moto's SQS over HTTP."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import boto3
import httpx
import pytest
from devstack.queues import FeedbackQueues
from fastapi import FastAPI
from feedback_ingest.app import create_app
from feedback_ingest.settings import IngestSettings
from llm_common.contracts.example import example_weekly_record

from tests.support.ingest import RequestQueue, Serve

API_KEY = "ingest-test-key"
"""The key of every ingest these tests build, and what their clients send, as the backend does
(test_ingest_auth.py covers the rule itself, with clients that send nothing of their own)."""


@pytest.fixture(autouse=True)
def ingest_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_API_KEYS", API_KEY)


@pytest.fixture
def request_queue(feedback_queues: FeedbackQueues, aws_env: str) -> RequestQueue:
    sqs = boto3.client("sqs", endpoint_url=aws_env, region_name="us-east-1")
    return RequestQueue(sqs, feedback_queues.requests)


@pytest.fixture
def settings(feedback_queues: FeedbackQueues) -> IngestSettings:
    return IngestSettings(feedback_queue_url=feedback_queues.requests)


@asynccontextmanager
async def _serve(
    app_or_settings: FastAPI | IngestSettings,
    raise_app_exceptions: bool = True,
    authenticated: bool = True,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, behind an HTTP client (httpx does not run lifespans)
    that sends `API_KEY` unless `authenticated` is False."""
    app = app_or_settings if isinstance(app_or_settings, FastAPI) else create_app(app_or_settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    headers = {"X-API-Key": API_KEY} if authenticated else {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://ingest", headers=headers) as client,
    ):
        yield client


@pytest.fixture
def serve() -> Serve:
    return _serve


@pytest.fixture
async def client(settings: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with _serve(settings) as client:
        yield client


@pytest.fixture
def record() -> dict[str, Any]:
    """The contracts' week as the Spring backend sends it (Korean titles, both date shapes,
    nulls), without a requestId: ingest derives one unless a test gives it."""
    return example_weekly_record(None)
