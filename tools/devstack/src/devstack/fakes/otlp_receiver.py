"""A tiny OTLP/HTTP trace receiver: what a collector would be sent, kept in memory.

Accepts `POST /v1/traces` as protobuf (`application/x-protobuf`, the SDK exporter's default) or
OTLP/JSON (`application/json`), gzip or not. `GET /spans` answers the spans received so far as
JSON (`?trace_id=` and `?name=` filter them), `DELETE /spans` forgets them.

In tests: `with OtlpReceiver() as receiver:` serves on a free loopback port from a thread; point
`OTEL_EXPORTER_OTLP_ENDPOINT` at `receiver.endpoint` and read `receiver.wait_for(...)`.
On its own: `python -m devstack.fakes.otlp_receiver --port 4318` prints a line per span.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# protobuf ships no type stubs.
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

TRACES_PATH = "/v1/traces"
SPANS_PATH = "/spans"
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_SPAN_FILTERS = frozenset({"trace_id", "name"})
# OTLP/JSON writes these ids as hex; the protobuf JSON mapping expects base64 for bytes.
_HEX_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service_name: str | None
    attributes: dict[str, Any]
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: str
    status_message: str
    events: list[dict[str, Any]]

    @property
    def duration_seconds(self) -> float:
        return (self.end_time_unix_nano - self.start_time_unix_nano) / 1e9


class SpanStore:
    """The spans received so far; thread-safe, and lets a reader wait for what it expects."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._changed = threading.Condition()

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._changed:
            self._spans.extend(spans)
            self._changed.notify_all()

    def all(self) -> list[ReceivedSpan]:
        with self._changed:
            return list(self._spans)

    def clear(self) -> None:
        with self._changed:
            self._spans.clear()

    def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """All spans once `done(spans)` holds; TimeoutError (with what arrived) if it never does."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(list(self._spans)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = [(span.service_name, span.name) for span in self._spans]
                    raise TimeoutError(f"spans never matched within {timeout}s; got {names}")
                self._changed.wait(remaining)
            return list(self._spans)


class InvalidExportRequest(ValueError):
    """The body is not an OTLP trace export request in the encoding it claims."""


def decode_export_request(
    body: bytes, content_type: str, content_encoding: str = ""
) -> list[ReceivedSpan]:
    """The spans in one OTLP/HTTP export request body (protobuf or JSON, gzip or not)."""
    request = ExportTraceServiceRequest()
    try:
        if content_encoding.strip().lower() == "gzip":
            body = gzip.decompress(body)
        if content_type.split(";")[0].strip().lower() == _JSON:
            as_protobuf_json = json.dumps(_hex_ids_to_base64(json.loads(body)))
            json_format.Parse(as_protobuf_json, request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(body)
    except (OSError, ValueError, DecodeError, json_format.ParseError) as error:
        raise InvalidExportRequest(str(error)) from error
    return list(_received_spans(request))


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    if isinstance(node, dict):
        return {
            key: base64.b64encode(bytes.fromhex(value)).decode()
            if key in _HEX_ID_FIELDS and isinstance(value, str)
            else _hex_ids_to_base64(value)
            for key, value in node.items()
        }
    return node


def _received_spans(request: ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service_name = resource.get("service.name")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield _received_span(span, service_name)


def _received_span(span: Span, service_name: str | None) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() or None,
        name=span.name,
        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        service_name=service_name,
        attributes=_attributes(span.attributes),
        start_time_unix_nano=span.start_time_unix_nano,
        end_time_unix_nano=span.end_time_unix_nano,
        status_code=Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
        status_message=span.status.message,
        events=[
            {"name": event.name, "attributes": _attributes(event.attributes)}
            for event in span.events
        ],
    )


def _attributes(key_values: Iterable[KeyValue]) -> dict[str, Any]:
    return {key_value.key: _value(key_value.value) for key_value in key_values}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


class OtlpReceiver:
    """The receiver on `host:port` (port 0: a free one), served from a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, echo: bool = False) -> None:
        self.store = SpanStore()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self.store, echo))
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OtlpReceiver:
        # A short poll interval so that stop() returns at once instead of after half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="otlp-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def spans(self) -> list[ReceivedSpan]:
        return self.store.all()

    def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        return self.store.wait_for(done, timeout)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _handler_for(store: SpanStore, echo: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Every reply has a Content-Length, so exporters may keep their connection open.
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            if urlsplit(self.path).path != TRACES_PATH:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            content_type = self.headers.get("Content-Type", _PROTOBUF)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = self.headers.get("Content-Encoding", "")
            try:
                spans = decode_export_request(body, content_type, encoding)
            except InvalidExportRequest as error:
                self.send_error(HTTPStatus.BAD_REQUEST, str(error))
                return
            store.add(spans)
            if echo:
                for span in spans:
                    print(_summary(span), flush=True)
            if content_type.startswith(_JSON):
                self._reply(_JSON, b"{}")
            else:
                self._reply(_PROTOBUF, ExportTraceServiceResponse().SerializeToString())

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != SPANS_PATH:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            query = parse_qs(url.query)
            if not set(query) <= _SPAN_FILTERS:
                self.send_error(HTTPStatus.BAD_REQUEST, f"filters: {sorted(_SPAN_FILTERS)}")
                return
            spans = [
                asdict(span)
                for span in store.all()
                if all(getattr(span, key) in values for key, values in query.items())
            ]
            self._reply(_JSON, json.dumps(spans).encode())

        def do_DELETE(self) -> None:
            if urlsplit(self.path).path != SPANS_PATH:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            store.clear()
            self.send_response(HTTPStatus.NO_CONTENT)
            self.end_headers()

        def _reply(self, content_type: str, body: bytes) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # One access line per export batch would drown the span lines.
            pass

    return Handler


def _summary(span: ReceivedSpan) -> str:
    return (
        f"{span.trace_id} {span.service_name or '-'} {span.name} "
        f"{span.duration_seconds * 1000:.1f}ms {span.status_code}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318, help="4318 is the OTLP/HTTP default")
    args = parser.parse_args()
    receiver = OtlpReceiver(args.host, args.port, echo=True)
    print(f"OTLP/HTTP receiver on {receiver.endpoint}{TRACES_PATH}", flush=True)
    receiver.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        receiver.stop()


if __name__ == "__main__":
    main()
