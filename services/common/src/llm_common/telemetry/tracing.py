"""Tracing configured only through the standard `OTEL_*` environment variables.

Every process gets an SDK `TracerProvider`, so trace and span ids exist (log lines carry them and
they travel to the next service) even when nothing is exported. Spans leave the process only when
the environment asks for it: `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
is set, or `OTEL_TRACES_EXPORTER=otlp`. `OTEL_SDK_DISABLED=true` leaves the no-op API in place.
Everything else (headers, timeout, compression, sampler, batch sizes, resource attributes) is read
by the SDK itself from its own variables.
"""

import contextlib
import logging
import os

from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.dependencies import DependencyConflictError
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, StatusCode

from llm_common.telemetry.messaging import botocore_request_hook

__all__ = ["record_error", "setup_tracing", "shutdown_tracing"]

_logger = logging.getLogger(__name__)

# The exporter names this package can honour; the SDK's other names need packages we do not ship.
_OTLP_EXPORTER_NAMES = frozenset({"otlp", "otlp_proto_http"})

_provider: TracerProvider | None = None
# The instrumentors are process-wide singletons; these are the client libraries the services use
# (httpx2: the openai client's and the worker's own; httpx where an image still ships it).
_BOTOCORE = BotocoreInstrumentor()  # type: ignore[no-untyped-call]
_CLIENT_INSTRUMENTORS = (_BOTOCORE, HTTPXClientInstrumentor(), HTTPX2ClientInstrumentor())


def setup_tracing(service_name: str) -> None:
    """Install the process's tracer provider and instrument botocore, httpx and httpx2, those
    of them installed (idempotent).

    `service_name` is the default `service.name`; `OTEL_SERVICE_NAME` or a `service.name` in
    `OTEL_RESOURCE_ATTRIBUTES` wins over it.
    """
    global _provider
    if _provider is not None or _sdk_disabled():
        return
    provider = TracerProvider(resource=_resource(service_name))
    if _otlp_export_requested():
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    for instrumentor in _CLIENT_INSTRUMENTORS:
        if not instrumentor.is_instrumented_by_opentelemetry:
            # botocore's SQS spans under the messaging conventions (messaging.py).
            hooks = {"request_hook": botocore_request_hook} if instrumentor is _BOTOCORE else {}
            # A library the service's image does not ship is skipped without an error line.
            with contextlib.suppress(DependencyConflictError):
                instrumentor.instrument(raise_exception_on_conflict=True, **hooks)


def shutdown_tracing() -> None:
    """Export what is still buffered, then stop tracing (call it last, on SIGTERM drain)."""
    global _provider
    if _provider is None:
        return
    for instrumentor in _CLIENT_INSTRUMENTORS:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    _provider.shutdown()
    _provider = None


def _sdk_disabled() -> bool:
    return os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true"


def _resource(service_name: str) -> Resource:
    # Resource.create would let our default override the environment; merging the environment's
    # detector last gives OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES the final word.
    return Resource.create({SERVICE_NAME: service_name}).merge(OTELResourceDetector().detect())


def _otlp_export_requested() -> bool:
    names = os.environ.get(OTEL_TRACES_EXPORTER)
    if names is None:
        requested = bool(
            os.environ.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
            or os.environ.get(OTEL_EXPORTER_OTLP_ENDPOINT)
        )
    else:
        chosen = {name.strip().lower() for name in names.split(",") if name.strip()}
        unsupported = chosen - _OTLP_EXPORTER_NAMES - {"none"}
        if unsupported:
            _logger.warning("OTEL_TRACES_EXPORTER names unsupported exporters: %s", unsupported)
        requested = bool(chosen & _OTLP_EXPORTER_NAMES)
    if requested:
        _warn_on_grpc_protocol()
    return requested


def _warn_on_grpc_protocol() -> None:
    protocol = os.environ.get(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) or os.environ.get(
        OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf"
    )
    if protocol.strip().lower() == "grpc":
        # A collector's gRPC port (4317) does not speak HTTP: spans would be lost silently.
        _logger.warning("OTLP protocol grpc is not supported here; exporting with http/protobuf")


def record_error(span: Span, error: BaseException | str) -> None:
    """Mark `span` failed for an error that was handled (a retried call, a refused delivery).

    Errors that escape a `start_as_current_span` block are recorded by the SDK already.
    """
    if isinstance(error, BaseException):
        span.record_exception(error)
        span.set_status(StatusCode.ERROR, f"{type(error).__qualname__}: {error}")
    else:
        span.set_status(StatusCode.ERROR, error)
