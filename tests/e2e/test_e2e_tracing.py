"""One trace follows a request from ingest through SQS into the worker, the LLM and the callback,
as a collector receives it over OTLP/HTTP (real processes, configured only by OTEL_*)."""

from collections.abc import Iterator

import httpx
import pytest
from devstack.fakes.otlp_receiver import OtlpReceiver, ReceivedSpan
from llm_common.contracts.example import example_weekly_record
from llm_common.telemetry import names

from tests.support.factories import StartStack
from tests.support.stack import wait_for_callback

pytestmark = pytest.mark.e2e

REQUEST_ID = "e2e-trace-1"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def _enqueue_span(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
    return next(
        (
            span
            for span in spans
            if span.name == names.ENQUEUE_SPAN
            and span.attributes.get(names.REQUEST_ID_ATTRIBUTE) == REQUEST_ID
        ),
        None,
    )


def _trace_of_request(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    enqueue = _enqueue_span(spans)
    return [span for span in spans if enqueue and span.trace_id == enqueue.trace_id]


def _callback_delivery(trace: list[ReceivedSpan]) -> ReceivedSpan | None:
    return next(
        (
            span
            for span in trace
            if span.name == names.DELIVERY_SPAN
            and span.attributes.get(names.DELIVERY_TARGET_ATTRIBUTE) == "callback"
        ),
        None,
    )


def _is_whole(spans: list[ReceivedSpan]) -> bool:
    trace = _trace_of_request(spans)
    found = {span.name for span in trace}
    callback = _callback_delivery(trace)
    callback_post = callback and any(span.parent_span_id == callback.span_id for span in trace)
    return bool(
        {names.QUEUE_WAIT_SPAN, names.PROCESS_SPAN, "POST /ai/feedback"} <= found
        and any(name.startswith("chat ") for name in found)
        and callback_post
    )


def test_one_trace_covers_ingest_the_queue_wait_the_worker_the_llm_and_the_callback(
    start_stack: StartStack, receiver: OtlpReceiver
) -> None:
    stack = start_stack(llm="fake", otlp_endpoint=receiver.endpoint)
    body = example_weekly_record(REQUEST_ID, member_id=31)
    answer = httpx.post(
        f"{stack.ingest_url}/ai/feedback", json=body, headers=stack.ingest_headers, timeout=10
    )
    assert answer.status_code == 202, answer.text
    wait_for_callback(stack, REQUEST_ID)

    trace = _trace_of_request(receiver.wait_for(_is_whole, timeout=30))

    by_name = {span.name: span for span in trace}
    server = by_name["POST /ai/feedback"]
    enqueue, queue_wait, process = (
        by_name[names.ENQUEUE_SPAN],
        by_name[names.QUEUE_WAIT_SPAN],
        by_name[names.PROCESS_SPAN],
    )
    chat = next(span for span in trace if span.name.startswith("chat "))
    callback = _callback_delivery(trace)
    assert callback is not None

    assert (server.service_name, server.kind) == ("feedback-ingest", "SERVER")
    assert (enqueue.service_name, enqueue.kind) == ("feedback-ingest", "PRODUCER")
    assert {span.service_name for span in trace} >= {"feedback-ingest", "feedback-worker"}
    # The worker's spans hang off the enqueue: the context travelled in the message attributes.
    assert (process.service_name, process.kind) == ("feedback-worker", "CONSUMER")
    assert process.parent_span_id == enqueue.span_id
    assert queue_wait.parent_span_id == enqueue.span_id
    assert queue_wait.start_time_unix_nano <= process.start_time_unix_nano
    assert queue_wait.attributes[names.RECEIVE_COUNT_ATTRIBUTE] == 1
    assert process.attributes[names.REQUEST_ID_ATTRIBUTE] == REQUEST_ID
    assert process.attributes[names.MEMBER_ID_ATTRIBUTE] == 31

    assert chat.parent_span_id == process.span_id
    assert chat.kind == "CLIENT"
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.request.model"] == stack.config.llm_model
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["stop"]

    assert callback.parent_span_id == process.span_id
    assert callback.attributes[names.DELIVERY_OUTCOME_ATTRIBUTE] == "delivered"
    assert callback.attributes[names.DELIVERY_ATTEMPT_ATTRIBUTE] == 1
    post = next(span for span in trace if span.parent_span_id == callback.span_id)
    # The httpx instrumentation writes the older HTTP conventions unless told otherwise.
    status = post.attributes.get(
        "http.response.status_code", post.attributes.get("http.status_code")
    )
    assert (post.kind, status) == ("CLIENT", 200)
    queue_delivery = [
        span
        for span in trace
        if span.name == names.DELIVERY_SPAN
        and span.attributes[names.DELIVERY_TARGET_ATTRIBUTE] == "queue"
    ]
    assert [span.attributes[names.DELIVERY_OUTCOME_ATTRIBUTE] for span in queue_delivery] == [
        "delivered"
    ]
    assert all(span.status_code != "ERROR" for span in trace)

    # OpenTelemetry's messaging conventions: the hop is a PRODUCER span with the SQS attributes,
    # botocore's send is named "{operation} {destination}", and the trace has one system value.
    requests_queue = stack.queues.requests.rsplit("/", 1)[1] if stack.queues else ""
    assert enqueue.attributes["messaging.system"] == "aws_sqs"
    assert enqueue.attributes["messaging.operation.type"] == "send"
    assert enqueue.attributes["messaging.destination.name"] == requests_queue
    send = by_name[f"send {requests_queue}"]
    assert (send.parent_span_id, send.attributes["messaging.operation.name"]) == (
        enqueue.span_id,
        "send",
    )
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.destination.name"] == requests_queue
    systems = {span.attributes.get("messaging.system") for span in trace} - {None}
    assert systems == {"aws_sqs"}
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert "gen_ai.system" not in chat.attributes
