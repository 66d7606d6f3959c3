"""How the worker's HTTP clients are built: the LLM's (under the openai client), the callback's
(results and failure notices), and the LLM gate's probes. All are httpx2 clients (the
continuation of httpx, which the openai client sends with), and one transport gives all of them
two rules.

An attempt has one deadline. httpx2's own timeouts bound each connect, write and read on its
own, so a peer that sends a byte now and then never trips them: with LLM_TIMEOUT_SECONDS=4 and
an LLM sending one byte every 0.5 s, a call was still open at 25 s, and with
CALLBACK_TIMEOUT_SECONDS=3 a callback answered by a dripping 503 body at 21 s, each holding its
LLM slot or delivery slot, its message and its member's FIFO group. Here an attempt (the wait
for a pooled connection, connect, the request sent, the status and the whole body read) ends at
its deadline with `AttemptTimeout`, one of httpx2's timeout exceptions: the openai client raises
APITimeoutError for it (the LLM gate reads a timeout; without the gate the client's own retries
take the next attempt), the callback counts a transient failure. Bodies are read inside the
deadline, so no caller streams: the worker never does.

No pooled connection is used near the server's idle limit. vLLM's API server is uvicorn with
`timeout_keep_alive=VLLM_HTTP_TIMEOUT_KEEP_ALIVE`, 5 s unless set (vllm/envs.py, passed in
vllm/entrypoints/openai/api_server.py), and httpx2 keeps idle connections 5 s too: a connection
taken just under 5 s idle could be closed by the server as the request travelled (against a
healthy vLLM, 19 of 144 reuses at 4.980-4.996 s idle failed with APIConnectionError, which the
LLM gate reads as an outage). Connections here expire after IDLE_EXPIRY_SECONDS. A server that
still closes a reused connection before answering (a shorter keep-alive than expected, a
restarted pod, a proxy) gets the request again on another connection within the same deadline,
as Go's net/http does for a request that a reused connection lost: uvicorn closes only
connections that have not started a request, and a replayed callback carries the same
webhook-id (the receiver's idempotency key).

Connections to the LLM also age out (LLM_CONNECTION_MAX_AGE_SECONDS). vLLM's Service is
balanced by kube-proxy per connection, and during a burst a connection is never idle long
enough to expire: a pod's calls and its gate's polls stay on the replicas they reached first,
so a replica added or replaced mid-burst got 0-7 of its 256 sequences in the fleet simulation
(docs/benchmarks.md, "Per-connection balancing strands the replacement"). Past the age every
request takes a new connection, which kube-proxy places afresh among the ready replicas.
"""

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import httpx2
from llm_common.telemetry.names import AttemptOutcome
from prometheus_client import Counter

from feedback_worker.replicas import Replicas, RoutedTransport

log = logging.getLogger(__name__)

IDLE_EXPIRY_SECONDS = 2.0
"""Well below the shortest idle limit on the worker's paths: vLLM's 5 s, with 3 s to spare for
a busy event loop between taking a connection and writing to it. The backend's Spring Boot
Tomcat keeps idle connections for its connectionTimeout (60 s unless
server.tomcat.keep-alive-timeout is set) and announces its 100th request's close
(`Connection: close`, which httpx2 honours), but what stands in front of it (an ingress, a load
balancer) is not known here: it gets the same figure. The cost is one new connection after 2 s
of quiet; during a burst connections are rarely idle that long."""

SERVER_CLOSED = (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError)
"""How a connection the server closed under a request fails before any answer."""


class AttemptTimeout(httpx2.TimeoutException):
    """The attempt was not answered in full (status and whole body) within its deadline."""


class ConnectionWatch:
    """Whether httpcore2 opened a new connection for a request (its `trace` extension)."""

    def __init__(self, request: httpx2.Request) -> None:
        self.opened = False
        request.extensions["trace"] = self._event

    async def _event(self, name: str, info: dict[str, Any]) -> None:
        if name == "connection.connect_tcp.started":
            self.opened = True


@dataclass(eq=False)
class _Pool:
    """One generation of connections: requests take it until `until`, then a new one's."""

    transport: httpx2.AsyncHTTPTransport
    until: float
    in_flight: int = 0


class AttemptTransport(httpx2.AsyncBaseTransport):
    """httpx2's pool, each attempt bounded by one deadline (module docstring). The transport
    owns each request's `trace` extension. `attempts`, when given, counts how each attempt
    ended: the only place that sees the openai client's own retries one by one.

    With `max_age_seconds`, no connection takes a request once it is that old: every period a
    new pool takes the requests, and the old one closes when its last request ends."""

    def __init__(
        self,
        attempt_seconds: float,
        limits: httpx2.Limits,
        attempts: Counter | None = None,
        max_age_seconds: float = math.inf,
    ) -> None:
        self._attempt_seconds = attempt_seconds
        self._limits = limits
        self._attempts = attempts
        self._max_age_seconds = max_age_seconds
        self._pool = self._new_pool()
        self._retired: set[_Pool] = set()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        outcome = AttemptOutcome.FAILED
        pool = await self._take_pool()
        try:
            async with asyncio.timeout(self._attempt_seconds):
                response = await _read_whole(await self._send(request, pool.transport))
            outcome = AttemptOutcome.ANSWERED
            return response
        except TimeoutError:
            outcome = AttemptOutcome.TIMED_OUT
            raise AttemptTimeout(
                f"no whole answer within {self._attempt_seconds:g} s", request=request
            ) from None
        finally:
            # Calls only: the start-up's GET of the model list is not one.
            if self._attempts is not None and request.method == "POST":
                self._attempts.labels(outcome).inc()
            await self._give_back(pool)

    def _new_pool(self) -> _Pool:
        transport = httpx2.AsyncHTTPTransport(limits=self._limits)
        return _Pool(transport, until=time.monotonic() + self._max_age_seconds)

    async def _take_pool(self) -> _Pool:
        if time.monotonic() >= self._pool.until:
            retired, self._pool = self._pool, self._new_pool()
            if retired.in_flight:
                self._retired.add(retired)
            else:
                await retired.transport.aclose()
        self._pool.in_flight += 1
        return self._pool

    async def _give_back(self, pool: _Pool) -> None:
        pool.in_flight -= 1
        if pool in self._retired and not pool.in_flight:
            self._retired.discard(pool)
            await pool.transport.aclose()

    async def _send(
        self, request: httpx2.Request, pool: httpx2.AsyncHTTPTransport
    ) -> httpx2.Response:
        """The answer's head; sent again while a reused connection fails before answering (each
        such connection leaves the pool, so a new one ends the loop)."""
        while True:
            watch = ConnectionWatch(request)
            try:
                return await pool.handle_async_request(request)
            except SERVER_CLOSED as error:
                if watch.opened:
                    raise
                log.info(
                    "%s closed a kept-alive connection before answering (%s): sent again",
                    request.url.host,
                    type(error).__name__,
                )

    async def aclose(self) -> None:
        for pool in (*self._retired, self._pool):
            await pool.transport.aclose()
        self._retired.clear()


async def _read_whole(response: httpx2.Response) -> httpx2.Response:
    """`response` with its body read to the end, still encoded (the client decodes it)."""
    try:
        body = b"".join([part async for part in response.aiter_raw()])
    finally:
        await response.aclose()
    return httpx2.Response(
        response.status_code,
        headers=response.headers,
        stream=httpx2.ByteStream(body),
        extensions=response.extensions,
    )


def bounded_client(
    attempt_seconds: float,
    max_connections: int,
    *,
    headers: dict[str, str] | None = None,
    follow_redirects: bool = False,
    attempts: Counter | None = None,
    max_age_seconds: float = math.inf,
    replicas: Replicas | None = None,
) -> httpx2.AsyncClient:
    """A client whose every attempt ends within `attempt_seconds`, with at most
    `max_connections` open (all kept while busy), none reused after IDLE_EXPIRY_SECONDS idle
    nor once `max_age_seconds` old; each attempt's outcome counted in `attempts` (labelled
    `outcome`) when given; each call sent to the replica `replicas` chooses when given
    (feedback_worker/replicas.py)."""
    limits = httpx2.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=IDLE_EXPIRY_SECONDS,
    )
    transport: httpx2.AsyncBaseTransport = AttemptTransport(
        attempt_seconds, limits, attempts, max_age_seconds
    )
    if replicas is not None:
        transport = RoutedTransport(transport, replicas)
    return httpx2.AsyncClient(
        transport=transport,
        timeout=attempt_seconds,
        headers=headers,
        follow_redirects=follow_redirects,
    )
