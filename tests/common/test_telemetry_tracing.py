"""Tracing: spans reach an OTLP collector only when OTEL_* says so, and one trace follows a
request over HTTP, through SQS message attributes, into the LLM call."""

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import httpx
import pytest
from devstack.fakes.otlp_receiver import OtlpReceiver, ReceivedSpan
from devstack.queues import FeedbackQueues
from devstack.serving import BackgroundServer
from fastapi import FastAPI
from llm_common.telemetry import (
    QUEUE_WAIT_SYSTEM_ATTRIBUTES,
    chat_span,
    extract_trace_context,
    inject_trace_context,
    queue_wait_span,
    record_chat_completion,
    record_error,
    setup_tracing,
    shutdown_tracing,
)
from llm_common.telemetry.names import (
    ENQUEUE_SPAN,
    PROCESS_SPAN,
    QUEUE_WAIT_SPAN,
    RECEIVE_COUNT_ATTRIBUTE,
)
from llm_common.telemetry.web import instrument_fastapi, mount_metrics
from openai.types.chat import ChatCompletion
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.util._once import Once

SERVICE = "telemetry-test"


def _forget_global_tracer_provider() -> None:
    # The API lets a process set its tracer provider once; tests need a fresh one each. This is
    # what opentelemetry-test-utils' reset_trace_globals does.
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No OTEL_* from the outer environment, and a fresh global tracer provider per test."""
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    _forget_global_tracer_provider()
    yield monkeypatch
    shutdown_tracing()
    _forget_global_tracer_provider()


@pytest.fixture
def exporting(otel_env: pytest.MonkeyPatch, receiver: OtlpReceiver) -> Iterator[OtlpReceiver]:
    """Tracing set up the way a deployment does it: only OTEL_EXPORTER_OTLP_ENDPOINT."""
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    setup_tracing(SERVICE)
    yield receiver
    shutdown_tracing()  # while the receiver still listens


def _exported(receiver: OtlpReceiver) -> dict[str, ReceivedSpan]:
    """Flush (as the SIGTERM drain does) and return the received spans by name."""
    shutdown_tracing()
    return {span.name: span for span in receiver.spans()}


def test_spans_reach_the_collector_named_after_the_service(exporting: OtlpReceiver) -> None:
    with trace.get_tracer(__name__).start_as_current_span("work", attributes={"n": 1}):
        pass

    span = _exported(exporting)["work"]
    assert span.service_name == SERVICE
    assert span.attributes == {"n": 1}


def test_otel_service_name_and_gzip_come_from_the_environment(
    otel_env: pytest.MonkeyPatch, receiver: OtlpReceiver
) -> None:
    otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{receiver.endpoint}/v1/traces")
    otel_env.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    otel_env.setenv("OTEL_SERVICE_NAME", "renamed-by-env")
    setup_tracing(SERVICE)
    with trace.get_tracer(__name__).start_as_current_span("work"):
        pass

    assert _exported(receiver)["work"].service_name == "renamed-by-env"


@pytest.mark.parametrize(
    "setting", [("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "none")]
)
def test_environment_can_switch_export_off(
    otel_env: pytest.MonkeyPatch, receiver: OtlpReceiver, setting: tuple[str, str]
) -> None:
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    otel_env.setenv(*setting)
    setup_tracing(SERVICE)
    with trace.get_tracer(__name__).start_as_current_span("work"):
        pass

    assert _exported(receiver) == {}


def test_without_otel_env_nothing_is_exported_and_ids_still_exist(
    otel_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    setup_tracing(SERVICE)
    with trace.get_tracer(__name__).start_as_current_span("work") as span:
        # Log lines and the SQS message still get a trace id to correlate by.
        assert span.get_span_context().is_valid
        assert "traceparent" in inject_trace_context()
    shutdown_tracing()

    # An exporter aimed at the default localhost:4318 would complain here.
    assert [record.getMessage() for record in caplog.records] == []


@pytest.fixture
def traced_app_url(exporting: OtlpReceiver) -> Iterator[str]:
    """A FastAPI app with tracing and /metrics, served over real HTTP."""
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    instrument_fastapi(app)
    mount_metrics(app)
    server = BackgroundServer(app).start()
    yield server.url
    server.stop()


def test_one_trace_covers_an_http_call_from_client_to_server(
    traced_app_url: str, exporting: OtlpReceiver
) -> None:
    with trace.get_tracer(__name__).start_as_current_span("caller") as caller:
        assert httpx.get(f"{traced_app_url}/hello").status_code == 200
    assert httpx.get(f"{traced_app_url}/metrics").status_code == 200

    shutdown_tracing()
    spans = exporting.spans()
    [server] = [span for span in spans if span.kind == "SERVER"]  # /metrics is not traced
    client = next(span for span in spans if span.span_id == server.parent_span_id)
    assert server.name == "GET /hello"
    assert client.kind == "CLIENT"
    assert server.trace_id == client.trace_id == _trace_id(caller)


def test_handled_errors_are_recorded_on_the_span(exporting: OtlpReceiver) -> None:
    with trace.get_tracer(__name__).start_as_current_span("deliver") as span:
        record_error(span, ConnectionError("callback unreachable"))
    with trace.get_tracer(__name__).start_as_current_span("refused") as span:
        record_error(span, "callback answered 404")

    spans = _exported(exporting)
    assert spans["deliver"].status_code == "ERROR"
    assert [event["name"] for event in spans["deliver"].events] == ["exception"]
    assert spans["refused"].status_code == "ERROR"
    assert spans["refused"].status_message == "callback answered 404"


def _send(queue_url: str, attributes: dict[str, Any]) -> None:
    boto3.client("sqs").send_message(
        QueueUrl=queue_url,
        MessageBody='{"memberId": 7}',
        MessageGroupId="7",
        MessageDeduplicationId="req-1",
        MessageAttributes=attributes,
    )


def _receive(queue_url: str, system_attributes: Sequence[str]) -> Any:
    received = boto3.client("sqs").receive_message(
        QueueUrl=queue_url,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=list(system_attributes),
        WaitTimeSeconds=1,
    )
    [message] = received["Messages"]
    return message


def _trace_id(span: trace.Span) -> str:
    return trace.format_trace_id(span.get_span_context().trace_id)


def test_trace_context_travels_through_sqs_message_attributes(
    exporting: OtlpReceiver, feedback_queues: FeedbackQueues
) -> None:
    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span(ENQUEUE_SPAN, kind=SpanKind.PRODUCER) as enqueue:
        _send(feedback_queues.requests, inject_trace_context())

    message = _receive(feedback_queues.requests, QUEUE_WAIT_SYSTEM_ATTRIBUTES)
    context = extract_trace_context(message.get("MessageAttributes"))
    queue_wait_span(message, context, queue_name="requests.fifo")
    with tracer.start_as_current_span(PROCESS_SPAN, context=context, kind=SpanKind.CONSUMER):
        pass

    spans = _exported(exporting)
    process, queue_wait = spans[PROCESS_SPAN], spans[QUEUE_WAIT_SPAN]
    assert process.trace_id == queue_wait.trace_id == _trace_id(enqueue)
    assert process.parent_span_id == queue_wait.parent_span_id == spans[ENQUEUE_SPAN].span_id
    # botocore's own span for the send is in the same trace, under the enqueue span, named and
    # described by the messaging conventions.
    queue = feedback_queues.requests.rsplit("/", 1)[1]
    send = spans[f"send {queue}"]
    assert send.parent_span_id == spans[ENQUEUE_SPAN].span_id
    assert send.attributes["messaging.operation.name"] == "send"
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.destination.name"] == queue
    assert spans[f"receive {queue}"].attributes["messaging.operation.type"] == "receive"
    # One messaging.system in the trace: botocore's "aws.sqs" is rewritten.
    systems = {s.attributes.get("messaging.system") for s in spans.values()} - {None}
    assert systems == {"aws_sqs"}


def test_queue_wait_span_starts_when_sqs_accepted_the_message(
    exporting: OtlpReceiver, feedback_queues: FeedbackQueues
) -> None:
    with trace.get_tracer(__name__).start_as_current_span(ENQUEUE_SPAN):
        _send(feedback_queues.requests, inject_trace_context())
    message = _receive(feedback_queues.requests, QUEUE_WAIT_SYSTEM_ATTRIBUTES)

    waited = queue_wait_span(
        message, extract_trace_context(message["MessageAttributes"]), "requests.fifo"
    )

    queue_wait = _exported(exporting)[QUEUE_WAIT_SPAN]
    sent_ns = int(message["Attributes"]["SentTimestamp"]) * 1_000_000
    assert queue_wait.start_time_unix_nano == sent_ns
    assert waited == pytest.approx(queue_wait.duration_seconds)
    assert queue_wait.attributes[RECEIVE_COUNT_ATTRIBUTE] == 1
    assert queue_wait.attributes["messaging.message.id"] == message["MessageId"]
    assert queue_wait.attributes["messaging.destination.name"] == "requests.fifo"


def test_a_message_without_trace_context_starts_a_new_trace(
    exporting: OtlpReceiver, feedback_queues: FeedbackQueues
) -> None:
    # The backend may publish to the queue directly, with no trace context at all.
    _send(feedback_queues.requests, {})
    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span("poll") as poll:
        message = _receive(feedback_queues.requests, QUEUE_WAIT_SYSTEM_ATTRIBUTES)
        context = extract_trace_context(message.get("MessageAttributes"))
        with tracer.start_as_current_span(PROCESS_SPAN, context=context):
            pass

    process = _exported(exporting)[PROCESS_SPAN]
    assert process.parent_span_id is None
    assert process.trace_id != _trace_id(poll)


def test_no_queue_wait_without_sent_timestamp(
    exporting: OtlpReceiver, feedback_queues: FeedbackQueues
) -> None:
    _send(feedback_queues.requests, inject_trace_context())
    message = _receive(feedback_queues.requests, ())

    context = extract_trace_context(message.get("MessageAttributes"))
    assert queue_wait_span(message, context) is None
    assert QUEUE_WAIT_SPAN not in _exported(exporting)


def _completion(**overrides: Any) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_750_000_000,
            "model": "gemma-3-270m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": "이번 주도 잘했어요! 🎉"},
                }
            ],
            "usage": {"prompt_tokens": 120, "completion_tokens": 45, "total_tokens": 165},
            **overrides,
        }
    )


def test_llm_span_has_the_genai_attributes_of_a_chat_completion(
    exporting: OtlpReceiver,
) -> None:
    with chat_span(
        "gemma-3", max_tokens=300, temperature=0.7, base_url="http://vllm:8000/v1"
    ) as span:
        record_chat_completion(span, _completion())

    llm = _exported(exporting)["chat gemma-3"]
    assert llm.kind == "CLIENT"
    assert llm.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gemma-3",
        "gen_ai.request.max_tokens": 300,
        "gen_ai.request.temperature": 0.7,
        "server.address": "vllm",
        "server.port": 8000,
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.model": "gemma-3-270m",
        "gen_ai.response.finish_reasons": ["length"],
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 45,
    }


def test_llm_span_without_usage_still_records_the_response(exporting: OtlpReceiver) -> None:
    with chat_span("gemma-3") as span:
        record_chat_completion(span, _completion(usage=None))

    attributes = _exported(exporting)["chat gemma-3"].attributes
    assert attributes["gen_ai.response.finish_reasons"] == ["length"]
    assert "gen_ai.usage.input_tokens" not in attributes


def test_a_failed_llm_call_is_an_error_span(exporting: OtlpReceiver) -> None:
    with pytest.raises(TimeoutError), chat_span("gemma-3"):
        raise TimeoutError("LLM did not answer")

    llm = _exported(exporting)["chat gemma-3"]
    assert llm.status_code == "ERROR"
    assert llm.attributes["error.type"] == "TimeoutError"
    assert [event["name"] for event in llm.events] == ["exception"]
