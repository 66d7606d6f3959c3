"""Start-up checks: refuse, in one line, what cannot work; wait for what is only not up yet.

Refused (ConfigurationError, exit 2): a request queue that is not FIFO or does not exist, no
DLQ, a DLQ that is the request queue itself (a poison message would be re-sent to itself
forever), an LLM server that answers 404 on /models (LLM_BASE_URL without `/v1`), refuses the
API key, or does not serve LLM_MODEL (every message would fail with HTTP 404); a request
store table (REQUEST_TABLE_NAME) that is missing, refused or keyed otherwise.

Waited for, with backoff and a JSON log line per try: SQS, the LLM or DynamoDB not answering. A
vLLM pod takes minutes to load its model, and the worker must not take messages it cannot work.
At the start of a burst from an empty GPU pool the first worker pod starts beside the first vLLM
replica (the chart's worker ScaledObject) and waits here through vLLM's cold start: it asks
every LLM_WAIT_MAX_SECONDS at most, as the LLM gate's probe does, so vLLM's first minutes of
work are not spent waiting for the worker's next try.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import openai
from botocore.exceptions import BotoCoreError, ClientError
from llm_common.aws import error_summary, is_transient
from llm_common.requests_store import RequestStore, StoreUnavailable, TableUnusable

from feedback_worker.aws_calls import AwsCalls
from feedback_worker.backoff import backoff_delay
from feedback_worker.errors import ConfigurationError
from feedback_worker.llm import FeedbackWriter
from feedback_worker.llm_gate import PROBE_MAX_SECONDS
from feedback_worker.settings import WorkerSettings
from feedback_worker.sqs import QueueFacts, Sqs, SqsSource, read_queue_facts

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
LLM_WAIT_MAX_SECONDS = PROBE_MAX_SECONDS
"""vLLM found at most this long after it serves (at 30 s, 15 s on average: issue 23's fleet,
first delivery cold start + 33 s where it asks for + 30 s)."""


class NotUpYet(Exception):
    """A dependency did not answer; start-up tries again."""


async def open_request_queue(settings: WorkerSettings, sqs: Sqs) -> SqsSource:
    """The request queue and its DLQ, checked; waits while SQS cannot be reached."""
    facts = await _until_up("SQS", lambda: _queue_facts(settings, sqs))
    if not facts.fifo:
        raise ConfigurationError(
            f"FEEDBACK_QUEUE_URL {settings.feedback_queue_url} is not a FIFO queue: per-member "
            "ordering and ingest's deduplication need one"
        )
    dead_letter_url = settings.feedback_dlq_url or facts.dead_letter_url
    if not dead_letter_url:
        raise ConfigurationError(
            "no DLQ for poison messages: set FEEDBACK_DLQ_URL or give the feedback queue a "
            "RedrivePolicy"
        )
    if dead_letter_url.rstrip("/") == settings.feedback_queue_url.rstrip("/"):
        raise ConfigurationError(
            "the DLQ is the request queue itself: a poison message would come back forever"
        )
    return SqsSource(sqs, settings.feedback_queue_url, dead_letter_url, facts.max_receive_count)


async def check_model(settings: WorkerSettings, writer: FeedbackWriter) -> None:
    """LLM_MODEL is among the models the LLM serves; waits while the LLM does not answer."""
    served = await _until_up(
        "the LLM", lambda: _served_models(settings, writer), LLM_WAIT_MAX_SECONDS
    )
    if settings.llm_model not in served:
        raise ConfigurationError(
            f"LLM_MODEL {settings.llm_model!r} is not served at {settings.llm_base_url} "
            f"(it serves: {', '.join(served) or 'nothing'})"
        )


async def open_request_store(settings: WorkerSettings, calls: AwsCalls) -> RequestStore | None:
    """The request store with its table checked; None when REQUEST_TABLE_NAME is empty."""
    if not settings.request_table_name:
        return None
    # Nobody waits on the worker's writes: longer than ingest's timeouts, more attempts.
    store = RequestStore(
        settings.request_table_name,
        settings.aws_region,
        max_pool_connections=calls.threads,
        read_timeout=10,
        max_attempts=3,
    )
    await _until_up("the request store", lambda: _table_checked(store, calls))
    return store


async def _table_checked(store: RequestStore, calls: AwsCalls) -> None:
    try:
        await calls.run(store.check_table)
    except StoreUnavailable as error:
        raise NotUpYet(str(error)) from error
    except TableUnusable as error:
        raise ConfigurationError(f"REQUEST_TABLE_NAME: {error}") from error


async def _queue_facts(settings: WorkerSettings, sqs: Sqs) -> QueueFacts:
    try:
        return await sqs.call(read_queue_facts, sqs.client, settings.feedback_queue_url)
    except BotoCoreError as error:
        raise NotUpYet(str(error)) from error
    except ClientError as error:
        if is_transient(error):
            raise NotUpYet(error_summary(error)) from error
        raise ConfigurationError(
            f"FEEDBACK_QUEUE_URL {settings.feedback_queue_url}: {error_summary(error)}"
        ) from error


async def _served_models(settings: WorkerSettings, writer: FeedbackWriter) -> list[str]:
    try:
        return await writer.served_models()
    except openai.NotFoundError as error:
        raise ConfigurationError(
            f"LLM_BASE_URL {settings.llm_base_url} answers 404 on /models: "
            "an OpenAI-compatible base URL ends in /v1"
        ) from error
    except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
        raise ConfigurationError(
            f"the LLM at {settings.llm_base_url} refused LLM_API_KEY (HTTP {error.status_code})"
        ) from error
    except openai.APIError as error:  # connection refused, timeout, 5xx: loading, say
        raise NotUpYet(type(error).__name__) from error


async def _until_up(
    what: str, attempt: Callable[[], Awaitable[T]], max_seconds: float = RETRY_MAX_SECONDS
) -> T:
    tries = 0
    while True:
        try:
            return await attempt()
        except NotUpYet as error:
            tries += 1
            delay = backoff_delay(tries, RETRY_BASE_SECONDS, max_seconds)
            log.warning("start-up: %s not answering (%s); next try in %.1fs", what, error, delay)
            await asyncio.sleep(delay)
