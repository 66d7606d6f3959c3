"""The test collector understands what real exporters send: OTLP/HTTP protobuf and JSON."""

from collections.abc import Iterator

import httpx
import pytest
from devstack.fakes.otlp_receiver import OtlpReceiver

TRACE_ID = "5b8efff798038103d269b633813fc60c"


def _json_export(trace_id: str, name: str) -> dict[str, object]:
    # The OTLP/JSON encoding: hex ids, enums as numbers, 64-bit integers as strings.
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "backend"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "eee19b7ec3c1b173",
                                "name": name,
                                "kind": 3,
                                "startTimeUnixNano": "1000000000",
                                "endTimeUnixNano": "3500000000",
                                "attributes": [
                                    {"key": "retries", "value": {"intValue": "2"}},
                                    {
                                        "key": "reasons",
                                        "value": {
                                            "arrayValue": {"values": [{"stringValue": "stop"}]}
                                        },
                                    },
                                ],
                                "status": {"code": 2, "message": "backend answered 503"},
                            }
                        ]
                    }
                ],
            }
        ]
    }


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def test_json_exports_are_decoded_like_protobuf_ones(receiver: OtlpReceiver) -> None:
    response = httpx.post(f"{receiver.endpoint}/v1/traces", json=_json_export(TRACE_ID, "call"))

    assert response.status_code == 200
    [span] = receiver.spans()
    assert (span.trace_id, span.span_id, span.parent_span_id) == (
        TRACE_ID,
        "eee19b7ec3c1b174",
        "eee19b7ec3c1b173",
    )
    assert (span.service_name, span.name, span.kind) == ("backend", "call", "CLIENT")
    assert span.attributes == {"retries": 2, "reasons": ["stop"]}
    assert (span.status_code, span.status_message) == ("ERROR", "backend answered 503")
    assert span.duration_seconds == 2.5


def test_spans_can_be_read_filtered_and_forgotten_over_http(receiver: OtlpReceiver) -> None:
    other_trace = "0" * 31 + "1"
    for trace_id, name in ((TRACE_ID, "a"), (TRACE_ID, "b"), (other_trace, "a")):
        httpx.post(f"{receiver.endpoint}/v1/traces", json=_json_export(trace_id, name))

    by_trace = httpx.get(f"{receiver.endpoint}/spans", params={"trace_id": TRACE_ID}).json()
    by_both = httpx.get(
        f"{receiver.endpoint}/spans", params={"trace_id": TRACE_ID, "name": "b"}
    ).json()
    assert [span["name"] for span in by_trace] == ["a", "b"]
    assert [span["name"] for span in by_both] == ["b"]
    assert httpx.get(f"{receiver.endpoint}/spans", params={"color": "red"}).status_code == 400

    assert httpx.delete(f"{receiver.endpoint}/spans").status_code == 204
    assert httpx.get(f"{receiver.endpoint}/spans").json() == []


def test_a_body_that_is_not_otlp_is_refused(receiver: OtlpReceiver) -> None:
    response = httpx.post(
        f"{receiver.endpoint}/v1/traces",
        content=b"\xff\x00not protobuf",
        headers={"Content-Type": "application/x-protobuf"},
    )

    assert response.status_code == 400
    assert receiver.spans() == []


def test_waiting_for_spans_that_never_come_says_what_did(receiver: OtlpReceiver) -> None:
    httpx.post(f"{receiver.endpoint}/v1/traces", json=_json_export(TRACE_ID, "only"))

    with pytest.raises(TimeoutError, match="only"):
        receiver.wait_for(lambda spans: len(spans) > 1, timeout=0.2)
