"""A fake OpenAI Batch/Files API: real HTTP, seedable with batches and files, fails on demand.

For qa-sync's tests (on a thread: `BackgroundServer(create_app(api))`, seeded through the
`FakeBatchApi` object) and for trying qa-sync by hand (`python -m devstack.fakes.fake_batch_api`,
seeded over HTTP). The official `openai` client talks to it with `base_url=<url>/v1`.

    GET  /v1/batches/{id}           a batch
    POST /v1/batches                create one from an uploaded input file (status validating)
    POST /v1/files                  upload a file (multipart, like the real API)
    GET  /v1/files/{id}             a file's metadata
    GET  /v1/files/{id}/content     its bytes, streamed in chunks
    POST /seed/batches              {"id"?, "status", "output"?, "errors"?, "total"?}: a batch
                                    with its output and error files, as the provider would
                                    leave it
    POST /seed/batches/{id}/status  {"status"}: move a batch along (in_progress → completed)
    POST /control                   {"fail_next", "fail_status", "fail_path", "refuse"}: only
                                    the fields given change; answers the faults now in force
    GET  /stats                     requests answered, per "METHOD path"
    POST /reset                     forget batches, files, faults and counts

`fail_next` answers the next N requests whose path starts with `fail_path` (every path when
empty) with `fail_status`; `refuse` answers all of them that way until turned off.
"""

import argparse
import email.parser
import email.policy
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from devstack.serving import listen_args, serve

CHUNK_BYTES = 64 * 1024
TERMINAL = ("completed", "failed", "expired", "cancelled")
STATUSES = ("validating", "in_progress", "finalizing", "cancelling", *TERMINAL)

ContentFactory = Callable[[], Iterable[bytes]]
"""File content made on demand, chunk by chunk: a 200 MB output file never sits in memory."""


@dataclass
class FakeFile:
    id: str
    filename: str
    purpose: str
    content: bytes | ContentFactory
    size: int
    created_at: int = field(default_factory=lambda: int(time.time()))

    def chunks(self) -> Iterator[bytes]:
        if isinstance(self.content, bytes):
            for start in range(0, len(self.content), CHUNK_BYTES):
                yield self.content[start : start + CHUNK_BYTES]
        else:
            yield from self.content()

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.size,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class Faults:
    fail_next: int = 0
    fail_status: int = 503
    fail_path: str = ""
    refuse: bool = False


class Control(BaseModel):
    fail_next: int | None = Field(None, ge=0)
    fail_status: int | None = Field(None, ge=400, le=599)
    fail_path: str | None = None
    refuse: bool | None = None


class SeedBatch(BaseModel):
    id: str | None = None
    status: str = "completed"
    output: str | None = None
    errors: str | None = None
    total: int | None = None


class StatusChange(BaseModel):
    status: str


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _lines_in(content: bytes) -> int:
    return sum(1 for line in content.splitlines() if line.strip())


class FakeBatchApi:
    """The provider's state. Methods are safe to call from the test's thread while the server
    answers on its own."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        """When set, requests without `Authorization: Bearer <api_key>` get 401."""
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.batches: dict[str, dict[str, Any]] = {}
            self.files: dict[str, FakeFile] = {}
            self.faults = Faults()
            self.requests: Counter[str] = Counter()

    # --- seeding ---

    def add_file(
        self,
        content: bytes | ContentFactory,
        *,
        purpose: str = "batch_output",
        filename: str = "results.jsonl",
        size: int | None = None,
    ) -> FakeFile:
        length = len(content) if isinstance(content, bytes) else (size or 0)
        fake = FakeFile(_new_id("file"), filename, purpose, content, length)
        with self._lock:
            self.files[fake.id] = fake
        return fake

    def seed_batch(
        self,
        output: bytes | ContentFactory | None = None,
        errors: bytes | None = None,
        *,
        status: str = "completed",
        batch_id: str | None = None,
        total: int | None = None,
    ) -> dict[str, Any]:
        """A batch as the provider leaves it: its output and error files, its request counts."""
        output_file = self.add_file(output) if output is not None else None
        error_file = self.add_file(errors, filename="errors.jsonl") if errors is not None else None
        input_file = self.add_file(b"", purpose="batch", filename="input.jsonl")
        succeeded = _lines_in(output) if isinstance(output, bytes) else (total or 0)
        failed = _lines_in(errors) if errors else 0
        batch = self.batch_json(batch_id or _new_id("batch"), input_file.id, status)
        batch["output_file_id"] = output_file.id if output_file else None
        batch["error_file_id"] = error_file.id if error_file else None
        count = total if total is not None else succeeded + failed
        batch["request_counts"] = {"total": count, "completed": succeeded, "failed": failed}
        with self._lock:
            self.batches[batch["id"]] = batch
        return batch

    def set_status(self, batch_id: str, status: str) -> dict[str, Any]:
        with self._lock:
            batch = self.batches[batch_id]
            batch["status"] = status
            if status in TERMINAL:
                batch[f"{status}_at"] = int(time.time())
            return batch

    def fail(self, times: int, status: int = 503, path: str = "") -> None:
        """Answer the next `times` requests under `path` with `status`."""
        with self._lock:
            self.faults = Faults(fail_next=times, fail_status=status, fail_path=path)

    def refuse(self, on: bool = True, status: int = 503) -> None:
        with self._lock:
            self.faults = Faults(fail_status=status, refuse=on)

    def count(self, method: str, path: str) -> int:
        return self.requests[f"{method} {path}"]

    # --- serving ---

    def batch_json(self, batch_id: str, input_file_id: str, status: str) -> dict[str, Any]:
        now = int(time.time())
        batch: dict[str, Any] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "created_at": now,
            "input_file_id": input_file_id,
            "status": status,
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "expires_at": now + 86_400,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": None,
        }
        if status in TERMINAL:
            batch[f"{status}_at"] = now
        return batch

    def take_fault(self, path: str) -> JSONResponse | None:
        with self._lock:
            faults = self.faults
            if not path.startswith(faults.fail_path) or not (faults.refuse or faults.fail_next):
                return None
            if not faults.refuse:
                faults.fail_next -= 1
        return _error(faults.fail_status, f"fake failure {faults.fail_status}", "server_error")

    def authorized(self, request: Request) -> bool:
        return self.api_key is None or (
            request.headers.get("authorization") == f"Bearer {self.api_key}"
        )


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status)


def _not_found(what: str) -> JSONResponse:
    return _error(404, f"No such {what}")


def _multipart_file(content_type: str, body: bytes) -> tuple[dict[str, str], bytes | None]:
    """The form fields and the file of a multipart/form-data body (stdlib parser: the fake
    needs no multipart dependency)."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, str] = {}
    upload: bytes | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        if part.get_filename() is not None:
            upload = payload
            fields["filename"] = part.get_filename() or "upload.jsonl"
        else:
            fields[name] = payload.decode()
    return fields, upload


def create_app(api: FakeBatchApi | None = None) -> FastAPI:
    api = api or FakeBatchApi()
    app = FastAPI(title="fake OpenAI Batch/Files API")

    @app.middleware("http")
    async def count_fail_authorize(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if not path.startswith("/v1/"):
            return await call_next(request)  # type: ignore[no-any-return]
        api.requests[f"{request.method} {path}"] += 1
        if (fault := api.take_fault(path)) is not None:
            return fault
        if not api.authorized(request):
            return _error(401, "Incorrect API key provided", "invalid_api_key")
        return await call_next(request)  # type: ignore[no-any-return]

    @app.get("/v1/batches/{batch_id}", response_model=None)
    def retrieve_batch(batch_id: str) -> JSONResponse | dict[str, Any]:
        batch = api.batches.get(batch_id)
        return batch if batch is not None else _not_found(f"batch: {batch_id}")

    @app.post("/v1/batches", response_model=None)
    async def create_batch(request: Request) -> JSONResponse | dict[str, Any]:
        body = await request.json()
        input_file = api.files.get(str(body.get("input_file_id")))
        if input_file is None or not isinstance(input_file.content, bytes):
            return _not_found(f"file: {body.get('input_file_id')}")
        batch = api.batch_json(_new_id("batch"), input_file.id, "validating")
        batch["endpoint"] = body.get("endpoint", batch["endpoint"])
        batch["metadata"] = body.get("metadata")
        total = _lines_in(input_file.content)
        batch["request_counts"] = {"total": total, "completed": 0, "failed": 0}
        api.batches[batch["id"]] = batch
        return batch

    @app.post("/v1/files", response_model=None)
    async def upload_file(request: Request) -> JSONResponse | dict[str, Any]:
        fields, content = _multipart_file(
            request.headers.get("content-type", ""), await request.body()
        )
        if content is None:
            return _error(400, "'file' is a required property")
        purpose = fields.get("purpose", "batch")
        return api.add_file(content, purpose=purpose, filename=fields["filename"]).as_json()

    @app.get("/v1/files/{file_id}", response_model=None)
    def retrieve_file(file_id: str) -> JSONResponse | dict[str, Any]:
        fake = api.files.get(file_id)
        return fake.as_json() if fake is not None else _not_found(f"file: {file_id}")

    @app.get("/v1/files/{file_id}/content", response_model=None)
    def file_content(file_id: str) -> Response:
        fake = api.files.get(file_id)
        if fake is None:
            return _not_found(f"file: {file_id}")
        return StreamingResponse(fake.chunks(), media_type="application/octet-stream")

    @app.post("/seed/batches")
    def seed(body: SeedBatch) -> dict[str, Any]:
        output = body.output.encode() if body.output is not None else None
        errors = body.errors.encode() if body.errors is not None else None
        return api.seed_batch(
            output, errors, status=body.status, batch_id=body.id, total=body.total
        )

    @app.post("/seed/batches/{batch_id}/status", response_model=None)
    def change_status(batch_id: str, body: StatusChange) -> JSONResponse | dict[str, Any]:
        if batch_id not in api.batches:
            return _not_found(f"batch: {batch_id}")
        if body.status not in STATUSES:
            return _error(400, f"status must be one of {', '.join(STATUSES)}")
        return api.set_status(batch_id, body.status)

    @app.post("/control")
    def control(change: Control) -> dict[str, Any]:
        for name, value in change.model_dump(exclude_unset=True).items():
            setattr(api.faults, name, value)
        return asdict(api.faults)

    @app.get("/stats")
    def stats() -> dict[str, int]:
        return dict(api.requests)

    @app.post("/reset")
    def reset() -> dict[str, Any]:
        api.reset()
        return asdict(api.faults)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.fakes.fake_batch_api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listen_args(parser)
    parser.add_argument("--api-key", help="require this bearer token")
    args = parser.parse_args(argv)
    serve(create_app(FakeBatchApi(api_key=args.api_key)), args.host, args.port)


if __name__ == "__main__":
    main()
