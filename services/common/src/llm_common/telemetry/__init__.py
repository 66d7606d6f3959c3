"""Traces, metrics and logs, set up the same way in every service (docs/observability.md).

A service wires it in with a few calls at start-up::

    setup_logging(settings.log_level, secret_values(settings))
    setup_tracing("feedback-ingest")
    web.instrument_fastapi(app)    # HTTP services (llm_common.telemetry.web)
    web.mount_metrics(app)         # HTTP services: GET /metrics
    start_metrics_server(port)     # the worker: METRICS_PORT
    ...
    shutdown_tracing()             # last thing on SIGTERM drain
"""

from llm_common.telemetry import messaging, metrics, names
from llm_common.telemetry.genai import ChatCompletionLike, chat_span, record_chat_completion
from llm_common.telemetry.log_context import LogContext, current_log_context, log_context
from llm_common.telemetry.logging import JsonFormatter, debug_text, setup_logging
from llm_common.telemetry.metrics_endpoint import start_metrics_server
from llm_common.telemetry.redaction import REDACTED, Redactor, secret_values
from llm_common.telemetry.sqs_propagation import (
    QUEUE_WAIT_SYSTEM_ATTRIBUTES,
    extract_trace_context,
    inject_trace_context,
    queue_wait_span,
)
from llm_common.telemetry.tracing import record_error, setup_tracing, shutdown_tracing

__all__ = [
    "QUEUE_WAIT_SYSTEM_ATTRIBUTES",
    "REDACTED",
    "ChatCompletionLike",
    "JsonFormatter",
    "LogContext",
    "Redactor",
    "chat_span",
    "current_log_context",
    "debug_text",
    "extract_trace_context",
    "inject_trace_context",
    "log_context",
    "messaging",
    "metrics",
    "names",
    "queue_wait_span",
    "record_chat_completion",
    "record_error",
    "secret_values",
    "setup_logging",
    "setup_tracing",
    "shutdown_tracing",
    "start_metrics_server",
]
