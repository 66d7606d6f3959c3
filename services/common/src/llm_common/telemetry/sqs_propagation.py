"""W3C trace context through SQS message attributes, and the queue wait as a span.

botocore's instrumentation traces the SQS calls but does not carry the context inside the
message, so ingest injects it into `MessageAttributes` and the worker extracts it from there.
The propagator is the global one (`OTEL_PROPAGATORS`, default `tracecontext,baggage`), so at most
three attributes are added (`traceparent`, `tracestate`, `baggage`, each only when it has a
value): SQS allows ten per message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter

from llm_common.telemetry.messaging import DESTINATION_NAME, MESSAGING_SYSTEM, SYSTEM
from llm_common.telemetry.names import QUEUE_WAIT_SPAN, RECEIVE_COUNT_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueOutputTypeDef,
        MessageAttributeValueTypeDef,
        MessageTypeDef,
    )

__all__ = [
    "QUEUE_WAIT_SYSTEM_ATTRIBUTES",
    "extract_trace_context",
    "inject_trace_context",
    "queue_wait_span",
]

QUEUE_WAIT_SYSTEM_ATTRIBUTES = ("SentTimestamp", "ApproximateReceiveCount")
"""Pass these as `MessageSystemAttributeNames` to ReceiveMessage so `queue_wait_span` has data."""


class _MessageAttributesGetter(Getter[Mapping[str, "MessageAttributeValueOutputTypeDef"]]):
    def get(
        self, carrier: Mapping[str, MessageAttributeValueOutputTypeDef], key: str
    ) -> list[str] | None:
        attribute = carrier.get(key)
        value = attribute.get("StringValue") if attribute is not None else None
        return [value] if value else None

    def keys(self, carrier: Mapping[str, MessageAttributeValueOutputTypeDef]) -> list[str]:
        return list(carrier)


_GETTER = _MessageAttributesGetter()


def inject_trace_context() -> dict[str, MessageAttributeValueTypeDef]:
    """The current trace context as SQS `MessageAttributes` (call it inside the enqueue span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    # SQS refuses a String attribute with an empty value.
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in carrier.items()
        if value
    }


def extract_trace_context(
    message_attributes: Mapping[str, MessageAttributeValueOutputTypeDef] | None,
) -> Context:
    """The context a received message carries; an empty one (a new trace) when it has none.

    The base is always an empty context, never the current one: a message that arrives without
    a trace (the backend publishing directly) must not join whatever span the poll loop is in.
    """
    return propagate.extract(message_attributes or {}, context=Context(), getter=_GETTER)


def queue_wait_span(
    message: MessageTypeDef, context: Context, queue_name: str | None = None
) -> float | None:
    """Record `feedback.queue_wait`: from SQS accepting `message` until now, under `context`.

    Returns the wait in seconds (for the queue wait histogram), or None when the message has no
    `SentTimestamp` (ReceiveMessage was not asked for `QUEUE_WAIT_SYSTEM_ATTRIBUTES`).
    """
    system_attributes = message.get("Attributes", {})
    sent_ms = system_attributes.get("SentTimestamp")
    if sent_ms is None:
        return None
    now_ns = time.time_ns()
    # SentTimestamp comes from SQS's clock; a worker clock slightly behind must not give a span
    # that ends before it starts.
    sent_ns = min(int(sent_ms) * 1_000_000, now_ns)
    attributes: dict[str, str | int] = {MESSAGING_SYSTEM: SYSTEM}
    if "MessageId" in message:
        attributes["messaging.message.id"] = message["MessageId"]
    if queue_name:
        attributes[DESTINATION_NAME] = queue_name
    receive_count = system_attributes.get("ApproximateReceiveCount")
    if receive_count is not None:
        attributes[RECEIVE_COUNT_ATTRIBUTE] = int(receive_count)
    span = trace.get_tracer(__name__).start_span(
        QUEUE_WAIT_SPAN, context=context, attributes=attributes, start_time=sent_ns
    )
    span.end(end_time=now_ns)
    return (now_ns - sent_ns) / 1e9
