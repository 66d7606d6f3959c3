"""What the reliability suite measures with: figures, the platform's clients, a cuttable proxy,
an HTTP proxy that fails the calls it is told to."""

import contextlib
import http.client
import json
import os
import queue
import re
import selectors
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
from devstack.processes import python_module
from devstack.stack import AWS_REGION, EMULATOR_CREDENTIALS, Stack

from tests.support.fakes import CallbackReceiver, SimulatedLlm
from tests.support.queues import receive_all

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef


@dataclass
class Figures:
    """One test's figures: written to RELIABILITY_REPORT_DIR by the `figures` fixture."""

    scenario: str
    check: str
    values: dict[str, Any] = field(default_factory=dict)
    log_scan: Counter[str] = field(default_factory=Counter)

    def __setitem__(self, name: str, value: Any) -> None:
        self.values[name] = value

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def scan_for_secrets(self, texts: Iterable[str], secrets: Iterable[str]) -> list[str]:
        """Count the lines of `texts` and the secrets found in them; return the offending lines."""
        wanted = [secret for secret in secrets if secret]
        found: list[str] = []
        self.log_scan.update({"log sources": 0, "log lines": 0, "secrets found": 0})
        for text in texts:
            self.log_scan["log sources"] += 1
            for line in text.splitlines():
                self.log_scan["log lines"] += 1
                if any(secret in line for secret in wanted):
                    found.append(line[:200])
        self.log_scan["secrets found"] += len(found)
        return found


def scan_log_dir(figures: Figures, directory: Path, secrets: Iterable[str]) -> list[str]:
    texts = (path.read_text(errors="replace") for path in sorted(directory.rglob("*.log")))
    return figures.scan_for_secrets(texts, secrets)


@dataclass
class Platform:
    """A started Stack, seen from outside: ingest, the fake LLM, the receiver, the queues."""

    stack: Stack
    api_key: str
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def llm(self) -> SimulatedLlm:
        """The stack's fake LLM: its faults, stats and recent requests."""
        return SimulatedLlm(f"http://127.0.0.1:{self.stack.config.ports.llm}")

    @property
    def receiver(self) -> CallbackReceiver:
        """The backend's stand-in: its script, deliveries and stats."""
        return CallbackReceiver(self.stack.callback_url)

    def post(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return self.http.post(
            f"{self.stack.ingest_url}/ai/feedback",
            json=body,
            headers={"X-API-Key": self.api_key, **headers},
        )

    def accept(self, body: dict[str, Any], **headers: str) -> str:
        answer = self.post(body, **headers)
        assert answer.status_code == 202, answer.text
        request_id: str = answer.json()["data"]["requestId"]
        return request_id

    def record(self, request_id: str) -> dict[str, Any]:
        """The request's record, as the backend asks for it (GET /ai/feedback/{id})."""
        answer = self.http.get(
            f"{self.stack.ingest_url}/ai/feedback/{request_id}", headers={"X-API-Key": self.api_key}
        )
        assert answer.status_code == 200, answer.text
        record: dict[str, Any] = answer.json()["data"]
        return record

    def records_agreeing(self, request_ids: Iterable[str]) -> int:
        """How many of `request_ids` the store has `delivered` with the content the receiver
        stored (answered 200) for them (failure notices, which carry none, aside)."""
        stored = {
            d["webhook_id"]: d["body"]["content"]
            for d in self.receiver.deliveries()
            if d["status"] == 200 and "content" in d["body"]
        }
        return sum(
            (record := self.record(request_id))["state"] == "delivered"
            and record["result"]["content"] == stored.get(request_id)
            for request_id in request_ids
        )

    def accepted_ids(self) -> set[str]:
        """Request ids the receiver answered 200 (stored) for."""
        return {d["webhook_id"] for d in self.receiver.deliveries() if d["status"] == 200}

    def sqs(self) -> "SQSClient":
        return boto3.client(
            "sqs",
            endpoint_url=self.stack.aws_endpoint,
            region_name=AWS_REGION,
            aws_access_key_id=EMULATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=EMULATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def dead_letters(self) -> list["MessageTypeDef"]:
        assert self.stack.queues is not None
        return receive_all(self.sqs(), self.stack.queues.dead_letters)

    def restart(self, name: str, **env_changes: str) -> None:
        """Stop a process (SIGTERM, then SIGKILL) and start it again, with `env_changes`."""
        process = self.stack.processes[name]
        process.stop()
        process.env = {**process.env, **env_changes}
        process.start()

    def worker_log(self, name: str = "worker") -> str:
        return self.stack.processes[name].log_path.read_text(errors="replace")

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`python -m feedback_worker admin ARGS` as an operator runs it: a process of its own,
        with the worker's environment."""
        env = {**os.environ, **self.stack.processes["worker"].env}
        return subprocess.run(
            python_module("feedback_worker", "admin", *args),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


StartPlatform = Callable[..., Platform]
"""`start_platform(worker_env=..., ingest_env=...)`: the platform, stopped after the test."""


def duplicates_by_id(deliveries: list[dict[str, Any]]) -> int:
    """Callbacks beyond the first per webhook-id."""
    counts = Counter(d["webhook_id"] for d in deliveries)
    return sum(count - 1 for count in counts.values())


class TcpProxy:
    """A loopback TCP forwarder that can be cut (connections refused, open ones reset) and
    restored on the same port: an SQS outage as the client sees it, without losing moto's state.

    `delay_s` holds what a client sends that long before passing it on: a slow link, or a
    client that lags between taking a pooled connection and writing to it, so that a request
    reaches the server after the keep-alive close it was sent before.
    """

    def __init__(self, target_port: int, delay_s: float = 0.0) -> None:
        self._target = ("127.0.0.1", target_port)
        self._delay_s = delay_s
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and reset the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _cut(listener)
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            _cut(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        to_upstream = DelayedSender(upstream, self._delay_s)
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            try:
                while True:
                    for key, _ in selector.select(timeout=1):
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        if key.fileobj is client:
                            to_upstream.send(data)
                        else:
                            client.sendall(data)
            except (OSError, ValueError):
                return
            finally:
                to_upstream.close()
                for sock in peers:
                    sock.close()


class DelayedSender:
    """Sends each chunk `delay_s` after it was handed over, in order, from its own thread: a
    link's latency, which consecutive chunks share instead of adding up."""

    def __init__(self, sock: socket.socket, delay_s: float) -> None:
        self._chunks: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
        threading.Thread(target=self._run, args=(sock, delay_s), daemon=True).start()

    def send(self, data: bytes) -> None:
        self._chunks.put((time.monotonic(), data))

    def close(self) -> None:
        """What is still on its way is dropped: the socket closes under it."""
        self._chunks.put(None)

    def _run(self, sock: socket.socket, delay_s: float) -> None:
        while (chunk := self._chunks.get()) is not None:
            handed_over, data = chunk
            time.sleep(max(0.0, handed_over + delay_s - time.monotonic()))
            try:
                sock.sendall(data)
            except OSError:
                return


DYNAMODB_INTERNAL_ERROR = json.dumps(
    {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "blip"}
).encode()
HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})


class DynamoDbBlip:
    """A real HTTP proxy in front of moto's DynamoDB: forwards every call, except that during a
    blip it answers HTTP 500 (InternalServerError, as DynamoDB does) to the calls of one
    operation whose body contains a given text. What a store blip is to the worker's client,
    retries and all: its own HTTP, not a patched function."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._until = 0.0
        self._operation = ""
        self._containing = b""
        self.failed = 0
        """Calls answered 500 so far."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def blip(self, seconds: float, operation: str = "UpdateItem", containing: str = "") -> None:
        """Answer 500 to `operation` calls with `containing` in their body for `seconds`."""
        self._operation, self._containing = operation, containing.encode()
        self._until = time.monotonic() + seconds

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _fails(self, target: str, body: bytes) -> bool:
        return (
            time.monotonic() < self._until
            and target.endswith(f".{self._operation}")
            and self._containing in body
        )

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection(*self._target, timeout=30)
        try:
            upstream.request(method, path, body=body, headers=headers)
            answer = upstream.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            upstream.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # botocore keeps its connections alive

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if proxy._fails(self.headers.get("x-amz-target", ""), body):
                    proxy.failed += 1
                    json_type = [("content-type", "application/x-amz-json-1.0")]
                    self._answer(500, json_type, DYNAMODB_INTERNAL_ERROR)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                self._answer(*proxy._forward("POST", self.path, headers, body))

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP | {"server", "date"}:
                        self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test's output is the figures."""

        return Handler


def _cut(sock: socket.socket) -> None:
    """Shut down at once (a thread blocked on the socket wakes up), then close."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


SECRET_LIKE = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD)")
WEBHOOK_SECRET_PREFIX = "whsec_"


def configured_secrets(env: dict[str, str]) -> list[str]:
    """Every value of a secret-named variable (comma-separated keys each on their own; a
    webhook secret also without its prefix). moto's dummy AWS credentials are no secret."""
    values: list[str] = []
    for name, value in env.items():
        if SECRET_LIKE.search(name) and not name.startswith("AWS_"):
            for part in (part.strip() for part in value.split(",")):
                values.append(part)
                values.append(part.removeprefix(WEBHOOK_SECRET_PREFIX))
    return [value for value in values if len(value) >= 8]
