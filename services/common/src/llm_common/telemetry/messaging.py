"""SQS spans under OpenTelemetry's messaging semantic conventions (semconv 1.3x, messaging).

APM queue views find a hop by `messaging.system`, `messaging.operation.name` and `.type`,
`messaging.destination.name`, and spans named `{operation} {destination}`. botocore's
instrumentation names its spans `SQS.SendMessage` and writes the older `messaging.system` value
`aws.sqs`, so one trace would carry two values beside our own spans' `aws_sqs`: its
`request_hook` (`botocore_request_hook`, installed by `setup_tracing`) rewrites both while the
span is still open. docs/observability.md (Traces) lists the names.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

__all__ = [
    "PROCESS",
    "SEND",
    "SYSTEM",
    "MessagingOperation",
    "botocore_request_hook",
    "messaging_attributes",
]

SYSTEM = "aws_sqs"
"""The conventions' `messaging.system` value for Amazon SQS."""

MESSAGING_SYSTEM = "messaging.system"
OPERATION_NAME = "messaging.operation.name"
OPERATION_TYPE = "messaging.operation.type"
DESTINATION_NAME = "messaging.destination.name"


class MessagingOperation(NamedTuple):
    name: str
    """System-specific (`messaging.operation.name`), also the span name's first word."""
    type: str
    """One of the conventions' types: create, send, receive, process, settle."""


SEND = MessagingOperation("send", "send")
PROCESS = MessagingOperation("process", "process")

# SQS API calls that are messaging operations; deleting a message acknowledges it and changing
# its visibility extends or gives up the lease: both settle it.
_SQS_OPERATIONS = {
    "SendMessage": SEND,
    "SendMessageBatch": SEND,
    "ReceiveMessage": MessagingOperation("receive", "receive"),
    "DeleteMessage": MessagingOperation("delete", "settle"),
    "DeleteMessageBatch": MessagingOperation("delete", "settle"),
    "ChangeMessageVisibility": MessagingOperation("change_visibility", "settle"),
    "ChangeMessageVisibilityBatch": MessagingOperation("change_visibility", "settle"),
}


def messaging_attributes(operation: MessagingOperation, queue: str) -> dict[str, AttributeValue]:
    """The conventions' attributes for one of our spans (`SEND`, `PROCESS`) about `queue` (a
    URL or a name)."""
    return _attributes(operation, _queue_name(queue))


def botocore_request_hook(
    span: Span, service_name: str, operation_name: str, api_params: Mapping[str, Any]
) -> None:
    """botocore's `request_hook`: SQS calls on a queue get the conventions' attributes and name."""
    queue_url = api_params.get("QueueUrl")
    if service_name.lower() != "sqs" or not isinstance(queue_url, str) or not span.is_recording():
        return
    span.set_attribute(MESSAGING_SYSTEM, SYSTEM)  # over botocore's "aws.sqs"
    operation = _SQS_OPERATIONS.get(operation_name)
    if operation is None:  # GetQueueAttributes and the like: not a messaging operation
        return
    destination = _queue_name(queue_url)
    span.set_attributes(_attributes(operation, destination))
    span.update_name(f"{operation.name} {destination}")


def _attributes(operation: MessagingOperation, destination: str) -> dict[str, AttributeValue]:
    return {
        MESSAGING_SYSTEM: SYSTEM,
        OPERATION_NAME: operation.name,
        OPERATION_TYPE: operation.type,
        DESTINATION_NAME: destination,
    }


def _queue_name(queue: str) -> str:
    return queue.rstrip("/").rsplit("/", 1)[-1]
