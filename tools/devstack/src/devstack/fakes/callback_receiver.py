"""A webhook receiver that verifies Standard Webhooks signatures and records every delivery.

For `make run` (it prints each verified delivery), the worker's tests and end-to-end tests.

    python -m devstack.fakes.callback_receiver [--host H] [--port P] [--secret whsec_...]

HOST, PORT and CALLBACK_SECRET (required) are read when no argument is given.

    POST <any other path>  a delivery: 401 unless the signature verifies; 409 for a webhook-id it
                           already accepted on any path (one idempotency store, as a real
                           receiver keeps: Standard Webhooks gives each message its own id);
                           else the scripted answer, or 200
    GET  /deliveries       every verified call, oldest first: {"webhook_id", "path", "status",
                           "body", "headers", "received_at"} (Unix seconds, for `make bench`),
                           and `open_s` for a dripped answer: the seconds from its arrival
                           until the client hung up (or the last byte)
    POST /control          script the next calls: {"status": 429, "times": 2, "retry_after": "1",
                           "delay_s": 0.0, "drip_s": 0.0, "path": "/feedback"}; `status`
                           omitted: answer normally (after `delay_s`); `drip_s` sends the
                           answer's body (the backend's envelope) one byte every `drip_s` seconds
                           after the status and headers: a receiver whose every read arrives in
                           time while the answer never ends; `path` given: only calls to that
                           path are scripted (the results endpoint down, the notices' one up)
    GET  /stats            {"deliveries", "accepted", "bad_signatures"}
    POST /reset            forget deliveries, script and counters
"""

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response
from llm_common.webhooks import WebhookVerificationError, verify_signature
from pydantic import BaseModel, Field

from devstack.fakes.drip import dripping
from devstack.serving import listen_args, serve


class Script(BaseModel):
    status: int | None = Field(None, ge=200, le=599)
    times: int = Field(1, ge=0)
    retry_after: str | None = None
    delay_s: float = Field(0.0, ge=0)
    drip_s: float = Field(0.0, ge=0)
    path: str | None = None
    """Only calls to this path (e.g. "/feedback") are scripted; None: every call."""

    def covers(self, path: str) -> bool:
        return self.times > 0 and (self.path is None or self.path.strip("/") == path.strip("/"))


@dataclass
class Receiver:
    secret: str
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    accepted_ids: set[str] = field(default_factory=set)
    """Every webhook-id accepted, whatever the path: one idempotency store, as the backend
    keeps, so a result sent under a failure notice's id is refused (409) here as it would be
    there."""
    bad_signatures: int = 0
    script: Script = field(default_factory=lambda: Script(times=0))

    def reset(self) -> None:
        self.deliveries.clear()
        self.accepted_ids.clear()
        self.bad_signatures = 0
        self.script = Script(times=0)

    def next_scripted(self, path: str) -> Script | None:
        if not self.script.covers(path):
            return None
        self.script.times -= 1
        return self.script

    def answer(self, webhook_id: str, scripted: Script | None) -> Response:
        if scripted is not None and scripted.status is not None:
            headers = {"retry-after": scripted.retry_after} if scripted.retry_after else None
            return Response(status_code=scripted.status, headers=headers)
        if webhook_id in self.accepted_ids:
            return Response(status_code=409)
        self.accepted_ids.add(webhook_id)
        return Response(status_code=200)


def create_app(secret: str) -> FastAPI:
    app = FastAPI(title="callback receiver (Standard Webhooks)")
    receiver = Receiver(secret=secret)

    @app.get("/deliveries")
    async def deliveries() -> list[dict[str, Any]]:
        return receiver.deliveries

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return {
            "deliveries": len(receiver.deliveries),
            "accepted": len(receiver.accepted_ids),
            "bad_signatures": receiver.bad_signatures,
        }

    @app.post("/control")
    async def control(script: Script) -> Script:
        receiver.script = script
        return script

    @app.post("/reset")
    async def reset() -> dict[str, str]:
        receiver.reset()
        return {"status": "reset"}

    @app.post("/{path:path}")
    async def delivery(path: str, request: Request) -> Response:
        received_at = time.time()
        raw = await request.body()
        headers = dict(request.headers)
        try:
            verify_signature(receiver.secret, raw, headers)
        except WebhookVerificationError:
            receiver.bad_signatures += 1
            return Response(status_code=401)
        scripted = receiver.next_scripted(path)
        if scripted is not None and scripted.delay_s:
            await asyncio.sleep(scripted.delay_s)
        webhook_id = headers["webhook-id"]
        response = receiver.answer(webhook_id, scripted)
        body = _json_or_text(raw)
        recorded = {
            "webhook_id": webhook_id,
            "path": f"/{path}",
            "status": response.status_code,
            "body": body,
            "headers": headers,
            "received_at": received_at,
        }
        receiver.deliveries.append(recorded)
        _print_delivery(response.status_code, webhook_id, body)
        if scripted is None or not scripted.drip_s:
            return response

        def ended() -> None:
            recorded["open_s"] = round(time.time() - received_at, 3)

        return _dripped(response, scripted.drip_s, ended)

    return app


def _dripped(response: Response, every_s: float, ended: Callable[[], None]) -> Response:
    """`response` (its status and Retry-After) with the backend's envelope for a body,
    {"status", "message", "data"}, dripped."""
    status = response.status_code
    envelope = {"status": status, "message": HTTPStatus(status).phrase, "data": None}
    headers = {name: value for name, value in response.headers.items() if name == "retry-after"}
    return dripping(json.dumps(envelope).encode(), every_s, ended, status, headers)


def _json_or_text(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _print_delivery(status: int, webhook_id: str, body: Any) -> None:
    fields = body if isinstance(body, dict) else {}
    print(
        f"[{status}] memberId={fields.get('memberId')} requestId={fields.get('requestId')} "
        f"webhook-id={webhook_id}\n  {fields.get('content', body)}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.fakes.callback_receiver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listen_args(parser)
    parser.add_argument("--secret", default=os.environ.get("CALLBACK_SECRET", ""))
    args = parser.parse_args(argv)
    if not args.secret:
        print("set CALLBACK_SECRET (or --secret) to the worker's whsec_ secret", file=sys.stderr)
        return 2
    serve(create_app(args.secret), args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
