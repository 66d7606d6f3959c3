"""`make demo`'s feedback half: post the example record to the running stack, then print the
feedback that came back through the signed callback, or, when the content checks refused every
draft, that no feedback came and why: never a refused draft presented as feedback."""

import json
import time
from typing import Any

import httpx
from llm_common.contracts.example import example_weekly_record

DEMO_TIMEOUT_S = 300.0
ENDED_WITHOUT_FEEDBACK = ("failed", "expired")
"""Request states (the request store's) in which no feedback will come."""


def feedback_demo(ingest: httpx.Client, callback_url: str) -> int:
    """`ingest` has ingest's URL as its base and sends its API key."""
    request_id = f"demo-{int(time.time())}"
    body = example_weekly_record(request_id)
    url = ingest.base_url.join("/ai/feedback")
    print(f"POST {url} (memberId={body['memberId']}, requestId={request_id})")
    try:
        answer = ingest.post("/ai/feedback", json=body)
    except httpx.TransportError as error:
        print(f"ingest is not reachable ({error}): start the platform with `make run` first.")
        return 1
    print(f"← {answer.status_code} {answer.text}")
    if answer.status_code != 202:
        return 1
    print("waiting for the worker, the LLM and the signed callback ...", flush=True)
    started = time.monotonic()
    while time.monotonic() - started < DEMO_TIMEOUT_S:
        delivery = _delivery(callback_url, request_id)
        if delivery is not None:
            print(f"callback after {time.monotonic() - started:.1f}s, signature verified:")
            print(json.dumps(delivery["body"], ensure_ascii=False, indent=2))
            return _show_record(ingest, request_id)
        record = _record(ingest, request_id)
        if record.get("state") in ENDED_WITHOUT_FEEDBACK:
            print(_no_feedback(record))
            return 1
        time.sleep(1)
    print(f"no callback within {DEMO_TIMEOUT_S:.0f}s; see .run/logs/worker.log")
    return 1


def _delivery(callback_url: str, request_id: str) -> dict[str, Any] | None:
    """The signed result the receiver got for `request_id` (failure notices have ids of their
    own, so this is only ever feedback that passed the content checks)."""
    deliveries: list[dict[str, Any]] = httpx.get(f"{callback_url}/deliveries", timeout=5).json()
    return next((d for d in deliveries if d["webhook_id"] == request_id), None)


def _record(ingest: httpx.Client, request_id: str) -> dict[str, Any]:
    answer = ingest.get(f"/ai/feedback/{request_id}")
    data: dict[str, Any] = answer.json().get("data") or {}
    return data


def _no_feedback(record: dict[str, Any]) -> str:
    """What the member gets instead of junk: nothing, and here why."""
    reason = record.get("failureReason") or "no reason recorded"
    return "\n".join(
        [
            f"NO FEEDBACK: the request ended {record.get('state')}, nothing was sent as feedback.",
            f"  why: {reason}",
            "  The content checks refused every draft the LLM wrote (docs/configuration.md,",
            "  Content checks); `make feedback-check` shows such drafts and each refusal.",
            json.dumps(record, ensure_ascii=False, indent=2),
        ]
    )


def _show_record(ingest: httpx.Client, request_id: str) -> int:
    """The request's record as the backend would ask for it."""
    answer = ingest.get(f"/ai/feedback/{request_id}")
    print(f"GET {answer.request.url} → {answer.status_code}")
    print(json.dumps(answer.json().get("data"), ensure_ascii=False, indent=2))
    return 0 if answer.status_code == 200 else 1
