"""Every setting of the worker: read from the environment once, validated at start-up."""

import json
import math
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from llm_common.settings import ServiceSettings
from llm_common.webhooks import signature_headers
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

# SQS limits: a visibility timeout is at most 12 hours, a long poll at most 20 seconds.
MAX_VISIBILITY_SECONDS = 43_200
# SQS keeps a received message in flight for 12 hours at most, however often it is renewed; the
# delivery budget leaves an hour of that for the wait, the LLM and the settle.
MAX_DELIVERY_RETRY_SECONDS = MAX_VISIBILITY_SECONDS - 3_600


def join_url(base: str, path: str) -> str:
    """`base` and `path` joined by exactly one slash; `base` alone when there is no path."""
    if not path.strip("/"):
        return base
    return f"{base.rstrip('/')}/{path.lstrip('/')}"


class WorkerSettings(ServiceSettings):
    """One attribute per environment variable (the name upper-cased)."""

    # The request queue.
    feedback_queue_url: str = Field(min_length=1)
    """`FEEDBACK_QUEUE_URL`: the SQS FIFO queue the accepted requests go to."""
    feedback_dlq_url: str = ""
    """Where poison messages go; empty: found from the request queue's RedrivePolicy."""
    sqs_wait_seconds: int = Field(20, ge=0, le=20)
    """How long one receive waits for messages (SQS long polling; 20 at most): an idle worker
    makes 3 calls a minute instead of spinning."""
    visibility_timeout_seconds: int = Field(60, ge=2, le=MAX_VISIBILITY_SECONDS)
    """Set on every receive; the heartbeat renews it every third of it while a message is worked."""
    worker_concurrency: int = Field(32, ge=1, le=1_000)
    """LLM calls at once at most: vLLM batches concurrent requests, so this keeps the GPU busy.
    With the LLM gate on, the ceiling of the adaptive limit (feedback_worker/llm_gate.py)."""
    worker_prefetch: int | None = Field(None, ge=0, le=1_000)
    """Messages received ahead of a free LLM slot, so a call that ends is followed at once by
    the next; unset: a quarter of WORKER_CONCURRENCY. 0 receives only into free LLM slots.
    Kept small: a received message's receive count grows when its pod dies, waiting or not."""
    retry_delay_seconds: int = Field(10, ge=0, le=MAX_VISIBILITY_SECONDS)
    """First delay before a transiently failed message comes back; doubles per receive."""
    retry_max_delay_seconds: int = Field(600, ge=0, le=MAX_VISIBILITY_SECONDS)
    """Cap on that delay."""
    drain_grace_seconds: float = Field(25.0, ge=0)
    """On SIGTERM, how long in-flight work may finish; keep it below the pod's grace period."""

    # The LLM (vLLM or any OpenAI-compatible server).
    llm_base_url: str = "http://127.0.0.1:8000/v1"
    """The OpenAI-compatible API, ending in /v1 (the chart's vLLM Service, or
    `worker.llm.externalBaseUrl`)."""
    llm_model: str = Field(min_length=1)
    """The model name the LLM serves (vLLM's `--served-model-name`)."""
    llm_api_key: SecretStr = SecretStr("")
    """Sent as `Authorization: Bearer`; vLLM's `--api-key` (from a Secret only)."""
    llm_timeout_seconds: float = Field(60.0, gt=0)
    """One attempt's whole budget, connect to the last byte (http_clients.AttemptTransport): past
    it the call is abandoned and vLLM aborts the request."""
    llm_connection_max_age_seconds: float = Field(10.0, gt=0)
    """No connection to the LLM (calls and the gate's polls) takes a request once this old, so
    kube-proxy's per-connection balancing reaches a replica added mid-burst
    (http_clients.AttemptTransport). Below a call at a full batch (~17 s): nearly every call
    there is placed afresh, for one TCP connect (no TLS inside the cluster) per call."""
    llm_max_retries: int = Field(3, ge=0)
    """The openai client's own retries, only with LLM_GATE_ENABLED=false: with the gate a
    failed call closes it and the message's SQS retry is the one retry, never stacked."""
    llm_gate_enabled: bool = True
    """Stop receiving while the LLM is down, adapt the calls in flight to what it can take."""
    llm_capacity_poll_seconds: float = Field(1.0, gt=0)
    """How often the gate reads vllm:num_requests_waiting from the LLM's /metrics."""
    llm_replicas: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """vLLM's replicas, comma-separated `host[:port]` (the port LLM_BASE_URL's where none is
    given), typically a headless Service's DNS name, which resolves to every ready vLLM pod:
    the gate reads each one's /metrics at every poll and each call goes to the one with the
    most room (feedback_worker/replicas.py). Empty: every call to LLM_BASE_URL, balanced by
    the Service per connection. Needs the gate (LLM_GATE_ENABLED)."""
    llm_target_waiting: int = Field(16, ge=0)
    """Requests allowed to wait inside vLLM (all workers together): enough to refill the slots
    freed between two polls (at the 3,300 tokens/s plateau ~15 feedbacks end per second), few
    enough that none waits long."""
    llm_start_limit: int = Field(8, ge=1)
    """Calls in flight before the first capacity reading, and at least that many when the gate
    reopens after an outage; doubles per poll until vLLM waits."""
    llm_temperature: float = Field(0.7, ge=0, le=2)
    """Sampling temperature of every feedback call: 0.7 keeps weekly texts from repeating word
    for word."""
    llm_priority: int | None = None
    """vLLM's per-request `priority` on every feedback call (a lower value is
    admitted first) for a vLLM started with `--scheduling-policy priority` and shared with
    interactive callers: theirs send none, which vLLM takes as 0, so at 10 a waiting chat call
    goes before every waiting feedback call. Unset: not sent (a server other than vLLM may refuse
    the field; vLLM's default FCFS policy ignores it)."""
    llm_max_tokens: int = Field(400, ge=1)
    """5-6 Korean sentences are about 150-300 tokens; the cap stops a rambling model early."""
    llm_stop: Annotated[list[Annotated[str, Field(min_length=1)]], NoDecode] = Field(
        default_factory=list
    )
    """Strings that end a draft where they appear (the OpenAI API's `stop`), as a JSON list:
    a base model served as plain text (the local stack's Gemma 3 270M) writes the next worked
    example after its feedback unless `["[기록]", "[피드백]"]` end it there. Empty for an
    instruction-tuned model, whose turn ends by itself."""
    prompt_template_file: Path | None = None
    """A prompt template replacing the built-in one (prompt.py: `$personal_challenges` and
    `$group_challenges` placeholders), checked at start-up."""

    # Content checks (content.py): what a draft must be before it reaches a member.
    content_min_chars: int = Field(40, ge=1)
    """A shorter draft is unfit (content.py): no member reads a one-liner as feedback."""
    content_max_chars: int = Field(1200, ge=1)
    """A longer draft is unfit: 5-6 sentences are 200-500 characters."""
    content_min_korean_ratio: float = Field(0.5, ge=0, le=1)
    """The share of a draft's letters that must be Hangul; 0 turns the check off."""

    # The request store (llm_common/requests_store.py); empty: none.
    request_table_name: str = ""
    """`REQUEST_TABLE_NAME`: the request store's DynamoDB table (llm_common/requests_store.py).
    Empty: no store, so no status lookup, idempotency only within SQS's 5-minute window, no
    record of a stored result, and a chosen request id must begin with `{memberId}-`
    (feedback_ingest/jobs.py)."""

    # Delivery: the result queue and/or the signed callback; an empty URL switches one off.
    result_queue_url: str = ""
    """The FIFO queue the backend consumes results from; empty: results go by callback only."""
    callback_url: str = ""
    """The backend's base URL for signed result callbacks; empty: results go to the queue only."""
    callback_path: str = ""
    """Joined to CALLBACK_URL for results."""
    callback_failure_path: str = ""
    """Where failure notices go (joined to CALLBACK_URL); empty: none are sent."""
    delivery_retry_seconds: int = Field(4500, ge=0, le=MAX_DELIVERY_RETRY_SECONDS)
    """How long an undelivered result is retried, from its generation, before it fails. 75
    minutes: a receiver outage of an hour that begins as the result is generated still ends
    within it, with a round (at most DELIVERY_RETRY_MAX_DELAY_SECONDS apart) to spare. The
    message is held meanwhile."""
    delivery_retry_max_delay_seconds: int = Field(60, ge=1, le=MAX_VISIBILITY_SECONDS)
    """Cap on the wait between two delivery rounds (the first is RETRY_DELAY_SECONDS)."""
    callback_secret: SecretStr = SecretStr("")
    """The Standard Webhooks secret (`whsec_...`) the callbacks are signed with (a Secret only)."""
    callback_timeout_seconds: float = Field(10.0, gt=0)
    """One callback attempt's whole budget, connect to the last byte."""
    callback_max_attempts: int = Field(5, ge=1)
    """Attempts of one delivery round before the result waits for the next round."""
    callback_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated host names; when set, the callback's host must be one of them, so a wrong
    or injected CALLBACK_URL cannot send signed results anywhere else."""

    # Telemetry (tracing is configured by the standard OTEL_* variables).
    metrics_port: int = Field(9100, ge=0, le=65_535)
    """Prometheus metrics on GET /metrics (the chart's probes call it too); 0 turns them off."""

    @property
    def prefetch(self) -> int:
        if self.worker_prefetch is None:
            return math.ceil(self.worker_concurrency / 4)
        return self.worker_prefetch

    @property
    def most_held(self) -> int:
        """Messages one worker may hold: at the LLM, received ahead, and being delivered."""
        return self.worker_concurrency + self.prefetch + self.worker_concurrency

    @property
    def llm_server_url(self) -> str:
        """The LLM server's root, where vLLM serves /health and /metrics (LLM_BASE_URL minus
        its /v1)."""
        base = self.llm_base_url.rstrip("/")
        return base.removesuffix("/v1")

    @property
    def client_retries(self) -> int:
        return 0 if self.llm_gate_enabled else self.llm_max_retries

    @property
    def callback_endpoint(self) -> str | None:
        return join_url(self.callback_url, self.callback_path) if self.callback_url else None

    @property
    def failure_endpoint(self) -> str | None:
        if not self.callback_url or not self.callback_failure_path.strip("/"):
            return None
        return join_url(self.callback_url, self.callback_failure_path)

    @model_validator(mode="after")
    def _failure_notices_have_their_own_path(self) -> Self:
        if not self.callback_failure_path:
            return self
        if not self.callback_url:
            raise ValueError("CALLBACK_FAILURE_PATH needs CALLBACK_URL: notices go to its host")
        failure, results = self.failure_endpoint, self.callback_endpoint
        if failure is None or failure.rstrip("/") == (results or "").rstrip("/"):
            # The result consumer must never get a body without content.
            raise ValueError("CALLBACK_FAILURE_PATH must differ from CALLBACK_PATH")
        return self

    @model_validator(mode="after")
    def _content_bounds_ordered(self) -> Self:
        if self.content_max_chars <= self.content_min_chars:
            raise ValueError("CONTENT_MAX_CHARS must be above CONTENT_MIN_CHARS")
        return self

    @model_validator(mode="after")
    def _delivers_somewhere(self) -> Self:
        if not self.result_queue_url and not self.callback_url:
            raise ValueError("set RESULT_QUEUE_URL and/or CALLBACK_URL: results must go somewhere")
        return self

    @model_validator(mode="after")
    def _callback_can_be_signed(self) -> Self:
        if self.callback_url:
            secret = self.callback_secret.get_secret_value()
            if not secret:
                raise ValueError("CALLBACK_SECRET is required when CALLBACK_URL is set")
            try:
                signature_headers(secret, "start-up-check", "")
            except Exception:
                # The exception text could quote the secret: say only what is wrong with it.
                raise ValueError(
                    "CALLBACK_SECRET is not a Standard Webhooks secret (whsec_<base64>)"
                ) from None
        return self

    @field_validator("llm_stop", mode="before")
    @classmethod
    def _stop_from_json(cls, value: Any) -> Any:
        # A JSON list, from the environment or passed as text: stop strings may hold commas.
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("callback_allowed_hosts", "llm_replicas", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [host.strip().lower() for host in value.split(",") if host.strip()]
        return value

    @model_validator(mode="after")
    def _replicas_read_by_the_gate(self) -> Self:
        if self.llm_replicas and not self.llm_gate_enabled:
            raise ValueError(
                "LLM_REPLICAS needs LLM_GATE_ENABLED: the gate's poll reads the replicas"
            )
        return self

    @model_validator(mode="after")
    def _callback_host_allowed(self) -> Self:
        endpoint = self.callback_endpoint
        if endpoint and self.callback_allowed_hosts:
            host = urlsplit(endpoint).hostname or ""
            if host not in self.callback_allowed_hosts:
                raise ValueError(
                    f"the callback host {host!r} is not in CALLBACK_ALLOWED_HOSTS "
                    f"({', '.join(self.callback_allowed_hosts)})"
                )
        return self

    @model_validator(mode="after")
    def _retry_delays_ordered(self) -> Self:
        if self.retry_max_delay_seconds < self.retry_delay_seconds:
            raise ValueError("RETRY_MAX_DELAY_SECONDS must not be below RETRY_DELAY_SECONDS")
        return self
