"""One worker process, composed in one place: the runner over the request queue, the LLM gate,
the feedback handler, and every client they share, built from the settings, checked, and closed
when the run ends.

`Worker.create` is the composition root. `python -m feedback_worker`, the tests and the benches
all build the worker through it, so what they run is production's wiring, the gate included;
its seams are a `MessageSource` in place of the SQS queue (`InMemorySource`, the stub broker)
and a `Clock` in place of the delivery budget's wall time.
"""

import asyncio
import contextlib
import logging
from dataclasses import replace

import httpx2
from llm_common.requests_store import RequestStore
from llm_common.telemetry import metrics

from feedback_worker.aws_calls import AwsCalls
from feedback_worker.delivery import Delivery, channels_from_settings, delivery_budget
from feedback_worker.delivery.budget import Clock
from feedback_worker.delivery.notices import notices_from_settings
from feedback_worker.errors import ConfigurationError
from feedback_worker.handler import FeedbackHandler
from feedback_worker.http_clients import bounded_client
from feedback_worker.llm import NO_API_KEY, FeedbackWriter
from feedback_worker.llm_gate import LlmGate
from feedback_worker.prompt import InvalidTemplate, PromptTemplate
from feedback_worker.records import RequestRecords
from feedback_worker.replicas import Replicas
from feedback_worker.runner import Runner, RunnerConfig
from feedback_worker.settings import WorkerSettings
from feedback_worker.slots import Bounds
from feedback_worker.source import MessageSource
from feedback_worker.sqs import Sqs
from feedback_worker.startup import check_model, open_request_queue, open_request_store

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 5.0
PROBE_CONNECTIONS = 2
"""The capacity poll and the probe of a closed gate; each waits for its answer."""


def runner_config(settings: WorkerSettings) -> RunnerConfig:
    return RunnerConfig(
        concurrency=settings.worker_concurrency,
        prefetch=settings.prefetch,
        wait_seconds=settings.sqs_wait_seconds,
        visibility_timeout=settings.visibility_timeout_seconds,
        retry_delay_seconds=settings.retry_delay_seconds,
        retry_max_delay_seconds=settings.retry_max_delay_seconds,
        drain_grace_seconds=settings.drain_grace_seconds,
    )


def callback_http(settings: WorkerSettings) -> httpx2.AsyncClient:
    """The results' and the failure notices' client, CALLBACK_TIMEOUT_SECONDS per attempt. A
    redirect would take the signed result to a host CALLBACK_ALLOWED_HOSTS never allowed: a 3xx
    is an unexpected answer instead."""
    return bounded_client(settings.callback_timeout_seconds, settings.worker_concurrency)


def probe_http(settings: WorkerSettings) -> httpx2.AsyncClient:
    """The LLM gate's own client: /health and /metrics answer while every call is busy, and a
    probe that drips ends like a call that does."""
    key = settings.llm_api_key.get_secret_value() or NO_API_KEY
    return bounded_client(
        PROBE_TIMEOUT_SECONDS,
        PROBE_CONNECTIONS,
        headers={"authorization": f"Bearer {key}"},
        max_age_seconds=settings.llm_connection_max_age_seconds,
    )


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        source: MessageSource,
        writer: FeedbackWriter,
        prompt: PromptTemplate,
        aws: AwsCalls,
        sqs: Sqs,
        store: RequestStore | None,
        clock: Clock | None = None,
        replicas: Replicas | None = None,
    ) -> None:
        """Wiring only (nothing is checked or started): see `create`. `replicas`: LLM_REPLICAS,
        shared by the writer's calls and the gate's polls."""
        self.settings = settings
        self._source = source
        self._writer = writer
        self._aws, self._sqs = aws, sqs
        self._http = callback_http(settings)
        self._probes = probe_http(settings)
        config = runner_config(settings)
        bounds = Bounds(config.concurrency, config.prefetch, on_limit=metrics.WORKER_LLM_LIMIT.set)
        self.gate = (
            LlmGate(
                bounds,
                self._probes,
                settings.llm_server_url,
                settings.llm_capacity_poll_seconds,
                settings.llm_target_waiting,
                settings.llm_start_limit,
                replicas,
            )
            if settings.llm_gate_enabled
            else None
        )
        budget = delivery_budget(settings)
        if clock is not None:
            budget = replace(budget, now=clock.now, sleep=clock.sleep)
        self._handler = FeedbackHandler(
            writer,
            prompt,
            Delivery(channels_from_settings(settings, sqs, self._http), budget),
            RequestRecords(store, aws, budget, notices_from_settings(settings, self._http)),
            self.gate,
        )
        self.runner = Runner(
            source,
            self._handler,
            config,
            bounds,
            self.gate,
            on_dead_letter=self._handler.dead_lettered,
        )

    @classmethod
    async def create(
        cls,
        settings: WorkerSettings,
        source: MessageSource | None = None,
        clock: Clock | None = None,
    ) -> "Worker":
        """Build and check every client: the composition root. `source`: the request queue
        (default: FEEDBACK_QUEUE_URL's, checked); `clock`: the delivery budget's (default: wall
        time). Raises ConfigurationError when it cannot work; waits (logging each try) while
        SQS, the LLM or DynamoDB does not answer yet."""
        try:
            prompt = PromptTemplate.from_file(settings.prompt_template_file)
        except (OSError, InvalidTemplate) as error:
            raise ConfigurationError(f"PROMPT_TEMPLATE_FILE: {error}") from error
        # One thread per message the worker may hold (each may be settled, or recorded, at
        # once), plus the heartbeat and a spare: no AWS call waits for a thread.
        aws = AwsCalls(settings.most_held + 2)
        sqs = Sqs.on(aws, settings.aws_region)
        replicas = (
            Replicas.from_names(settings.llm_replicas, settings.llm_base_url)
            if settings.llm_replicas
            else None
        )
        writer = FeedbackWriter.from_settings(settings, replicas)
        try:
            if source is None:
                source = await open_request_queue(settings, sqs)
            await check_model(settings, writer)
            store = await open_request_store(settings, aws)
        except BaseException:
            await writer.close()
            sqs.close()
            aws.close()
            raise
        return cls(settings, source, writer, prompt, aws, sqs, store, clock, replicas)

    def stop(self) -> None:
        """Stop receiving and drain (SIGTERM, SIGINT). Safe to call more than once."""
        self.runner.stop()

    async def run(self, burst: bool = False) -> None:
        """Work until `stop()` (or, with `burst`, until the source has nothing left), then
        drain and close every client."""
        log.info(
            "worker up: queue %s, DLQ %s, %d in flight at most, LLM %s (%s), delivering to %s",
            self._source.name,
            self._source.dead_letter_name,
            self.settings.worker_concurrency,
            self.settings.llm_base_url,
            self.settings.llm_model,
            " and ".join(self._handler.channel_names),
        )
        capacity = None
        if self.gate is not None:
            await self.gate.learn_metrics()
            capacity = asyncio.create_task(self.gate.follow_capacity(), name="llm capacity")
        try:
            await self.runner.run(burst=burst)
        finally:
            if capacity is not None:
                capacity.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await capacity
            if self.gate is not None:
                await self.gate.stop()
            await self._writer.close()
            await self._http.aclose()
            await self._probes.aclose()
            self._sqs.close()
            self._aws.close()
        log.info("worker stopped")
