"""Every Prometheus metric the platform exposes, defined once, at import.

The metrics live in this package's own registry (`REGISTRY`), not prometheus-client's global one:
a second import of this module (a reload, a test that imports it under another name) then builds
a fresh registry instead of failing on duplicated names, and `/metrics` shows exactly these
families plus the process collectors. Every process exposes every family; only its own move.

Label values come from the enums in `names.py`; labels with a fixed set of values are created
up front so that their series exist (at 0) before the first event, which `rate()` and alerts need.
qa-sync's labels take the values of its own enums (job status, problem, object kind, action).
"""

from collections.abc import Iterable
from enum import StrEnum
from itertools import product
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from llm_common.telemetry.names import (
    AttemptOutcome,
    ContentCheck,
    ContentOutcome,
    DeadLetterReason,
    DeliveryOutcome,
    DeliveryTarget,
    DrainOutcome,
    Outcome,
    RejectReason,
    RetryOperation,
    SkipReason,
)

# `*_created` series double the output and no dashboard here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_FAST_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Scale-from-zero (KEDA) makes minutes of waiting normal; an hour is the alarm.
_QUEUE_WAIT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 3600.0)
# vLLM on a GPU answers in seconds; the CPU model in the local stack takes tens of seconds.
_LLM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


_Labelled = TypeVar("_Labelled", Counter, Histogram)


def _with_series(metric: _Labelled, *values: Iterable[StrEnum]) -> _Labelled:
    """Create the series for every combination of the given label values."""
    for combination in product(*values):
        metric.labels(*combination)
    return metric


# ingest
INGEST_REQUESTS_ACCEPTED = Counter(
    "feedback_ingest_requests_accepted",
    "Feedback requests accepted (202, after SQS took the message).",
    registry=REGISTRY,
)
INGEST_REQUESTS_REJECTED = _with_series(
    Counter(
        "feedback_ingest_requests_rejected",
        "Feedback requests refused, by reason.",
        ["reason"],
        registry=REGISTRY,
    ),
    RejectReason,
)
INGEST_ENQUEUE_DURATION = _with_series(
    Histogram(
        "feedback_ingest_enqueue_duration_seconds",
        "Time SQS SendMessage took, by outcome.",
        ["outcome"],
        buckets=_FAST_CALL_BUCKETS,
        registry=REGISTRY,
    ),
    Outcome,
)

# The request queue's and its DLQ's depth, polled by ingest (always running, unlike workers that
# KEDA may hold at zero): what "backlog with no worker" and "DLQ not empty" alert on.
SQS_MESSAGES = Gauge(
    "feedback_sqs_messages",
    "Messages in the platform's SQS queues (GetQueueAttributes, approximate), by queue role "
    "(requests, dead_letter) and state (visible, in_flight, delayed).",
    ["queue", "state"],
    registry=REGISTRY,
)

# worker
WORKER_QUEUE_WAIT = Histogram(
    "feedback_worker_queue_wait_seconds",
    "Time from SQS accepting a message (SentTimestamp) to the worker receiving it.",
    buckets=_QUEUE_WAIT_BUCKETS,
    registry=REGISTRY,
)
WORKER_MESSAGES_IN_FLIGHT = Gauge(
    "feedback_worker_messages_in_flight",
    "Messages received and not yet finished (deleted or released).",
    registry=REGISTRY,
)
WORKER_LLM_DURATION = Histogram(
    "feedback_worker_llm_duration_seconds",
    "Time one LLM chat completion call took, by model and outcome.",
    ["model", "outcome"],
    buckets=_LLM_BUCKETS,
    registry=REGISTRY,
)
WORKER_LLM_TOKENS = Counter(
    "feedback_worker_llm_tokens",
    "Tokens the LLM reported, by model and type (input, output).",
    ["model", "type"],
    registry=REGISTRY,
)
WORKER_LLM_ATTEMPTS = _with_series(
    Counter(
        "feedback_worker_llm_attempts",
        "HTTP attempts at the LLM, the client's own retries included, by outcome (answered, "
        "timed_out, failed).",
        ["outcome"],
        registry=REGISTRY,
    ),
    AttemptOutcome,
)
WORKER_RETRIES = _with_series(
    Counter(
        "feedback_worker_retries",
        "Retries after a transient failure, by operation (llm, queue, callback, store).",
        ["operation"],
        registry=REGISTRY,
    ),
    RetryOperation,
)
WORKER_DELIVERIES = _with_series(
    Counter(
        "feedback_worker_deliveries",
        "Delivery attempts, by target (queue, callback, failure_notice) and outcome.",
        ["target", "outcome"],
        registry=REGISTRY,
    ),
    DeliveryTarget,
    DeliveryOutcome,
)
WORKER_DLQ_SENDS = _with_series(
    Counter(
        "feedback_worker_dlq_sends",
        "Messages the worker moved to the dead-letter queue itself, by reason.",
        ["reason"],
        registry=REGISTRY,
    ),
    DeadLetterReason,
)
WORKER_SKIPS = _with_series(
    Counter(
        "feedback_worker_skipped",
        "Messages the worker deleted without an LLM call or a delivery, by reason (cancelled).",
        ["reason"],
        registry=REGISTRY,
    ),
    SkipReason,
)
WORKER_LLM_GATE_OPEN = Gauge(
    "feedback_worker_llm_gate_open",
    "1 while the worker sends to the LLM, 0 while its gate is closed (LLM down or refusing).",
    registry=REGISTRY,
)
WORKER_LLM_GATE_OPEN.set(1)
WORKER_LLM_LIMIT = Gauge(
    "feedback_worker_llm_limit",
    "LLM calls this worker may have in flight now (adaptive, at most WORKER_CONCURRENCY).",
    registry=REGISTRY,
)
WORKER_LLM_REPLICAS = Gauge(
    "feedback_worker_llm_replicas",
    "vLLM replicas that answered this worker's last poll and take its calls (LLM_REPLICAS; 0 "
    "without it: the Service balances).",
    registry=REGISTRY,
)
WORKER_LLM_GATE_CLOSED_SECONDS = Counter(
    "feedback_worker_llm_gate_closed_seconds",
    "Seconds the LLM gate has been closed (no receives while the LLM is down).",
    registry=REGISTRY,
)
WORKER_CONTENT_CHECKS = _with_series(
    Counter(
        "feedback_worker_content_checks",
        "Drafts the content checks passed, trimmed, sent back for one more draft or failed, by "
        "check (all, empty, incomplete, too_short, too_long, link, email, phone, not_korean).",
        ["check", "outcome"],
        registry=REGISTRY,
    ),
    ContentCheck,
    ContentOutcome,
)
WORKER_DRAINS = _with_series(
    Counter(
        "feedback_worker_drains",
        "Graceful drains on SIGTERM, by outcome (completed, timed_out).",
        ["outcome"],
        registry=REGISTRY,
    ),
    DrainOutcome,
)

# qa-sync
QA_SYNC_JOBS = Gauge(
    "qa_sync_jobs",
    "Batch jobs in the registry, by status (set from the registry after each pass).",
    ["status"],
    registry=REGISTRY,
)
QA_SYNC_VERIFICATION_FAILURES = Counter(
    "qa_sync_verification_failures",
    "Problems verification found in a job's S3 objects, by object (processed, raw) and problem.",
    ["object", "problem"],
    registry=REGISTRY,
)
QA_SYNC_REPAIRS = Counter(
    "qa_sync_repairs",
    "Objects repaired, by object (processed, raw) and action (rebuilt_from_raw, ...).",
    ["object", "action"],
    registry=REGISTRY,
)
QA_SYNC_REPAIR_FAILURES = Counter(
    "qa_sync_repair_failures",
    "Repairs that could not be made (no source left to rebuild the objects from).",
    registry=REGISTRY,
)
