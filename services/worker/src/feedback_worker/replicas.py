"""Each LLM call to the vLLM replica with the most room (LLM_REPLICAS; off when empty).

vLLM's Service is balanced by kube-proxy per connection: a replica added mid-burst gets calls
only as the worker's connections age out and land on it at random, and each LLM gate's poll
reads one replica. In section 8 of the bench (two replicas, the second started mid-burst) it ran
90 % of its batch 21 s after its start with connections aged every 10 s, never while they were
pinned (docs/benchmarks.md).

Here the worker balances itself, over a headless Service (its DNS name resolves to every ready
vLLM pod): at every gate poll it resolves LLM_REPLICAS again and reads each replica's /metrics;
each call then goes to the replica with the fewest sequences running + waiting at that reading
plus the calls this worker has sent it since. The gate's law runs over all the readings
(`next_limit_over_replicas` in feedback_worker/llm_gate.py), so a new replica's empty batch is
seen at the first poll after it is ready and filled by the next. A replica that does not answer
its poll takes no call until it does, nor one whose call failed (refused, reset, a 5xx) until
a poll finds it answering again; before the first poll, or when none is left, calls take
LLM_BASE_URL (the Service) as without this.
"""

import asyncio
import logging
import random
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx2
from llm_common.telemetry import metrics

from feedback_worker.llm_gate import Capacity, fetch_capacity

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Replica:
    """One vLLM pod, as this worker last read it."""

    host: str
    port: int
    reading: Capacity
    sent: int = 0
    """Calls sent to it since `reading`: a reading does not show them yet."""

    @property
    def load(self) -> float:
        return self.reading.running + self.reading.waiting + self.sent


@dataclass
class Replicas:
    """The replicas behind LLM_REPLICAS (`host[:port]` names, the port LLM_BASE_URL's where
    none is given) as the last poll found them."""

    names: list[tuple[str, int]]
    known: list[Replica] = field(default_factory=list)

    @classmethod
    def from_names(cls, names: list[str], base_url: str) -> "Replicas":
        default_port = urlsplit(base_url).port or 80
        parsed = []
        for name in names:
            host, colon, port = name.rpartition(":")
            parsed.append((host, int(port)) if colon else (name, default_port))
        return cls(parsed)

    async def refresh(self, http: httpx2.AsyncClient) -> list[Capacity] | None:
        """Every replica's reading (those that answer), which the next calls are balanced on;
        None when the replicas serve no vLLM metrics. Raises httpx2.TransportError when no
        replica answers (none resolved, or none reachable)."""
        addresses = await self._resolve()
        answers = await asyncio.gather(
            *(_read(http, host, port) for host, port in addresses), return_exceptions=True
        )
        read: list[Replica] = []
        for (host, port), answer in zip(addresses, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, httpx2.TransportError):
                    raise answer
                continue
            if answer is None:
                return None
            read.append(Replica(host, port, answer))
        if not read:
            raise httpx2.ConnectError(f"no replica of {self._shown()} answers /metrics")
        if len(read) != len(self.known):
            log.info("LLM replicas: %d of %d answer", len(read), len(addresses))
        self._know(read)
        return [replica.reading for replica in read]

    def forget(self, replica: Replica) -> None:
        """A call to `replica` found it gone (refused, reset, a 5xx): no call goes there again
        before a poll finds it answering. Kept, it could take every trial call of a gate that
        reopens, and close it again, while the gate does not poll."""
        if replica in self.known:
            self._know([r for r in self.known if r is not replica])
            log.info(
                "LLM replicas: %s:%d failed a call; none goes there before it answers a poll",
                replica.host,
                replica.port,
            )

    def choose(self) -> Replica | None:
        """The replica with the least load (ties at random), counted as sent one more call;
        None before any reading."""
        if not self.known:
            return None
        least = min(replica.load for replica in self.known)
        chosen = random.choice([r for r in self.known if r.load == least])
        chosen.sent += 1
        return chosen

    def _know(self, replicas: list[Replica]) -> None:
        self.known = replicas
        metrics.WORKER_LLM_REPLICAS.set(len(replicas))

    async def _resolve(self) -> list[tuple[str, int]]:
        """Each name's addresses now: a headless Service's are its ready pods'."""
        loop = asyncio.get_running_loop()
        addresses: dict[tuple[str, int], None] = {}
        for host, port in self.names:
            try:
                found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as error:
                log.warning("LLM replicas: %s does not resolve (%s)", host, error)
                continue
            for _, _, _, _, address in found:
                addresses[(str(address[0]), port)] = None
        return list(addresses)

    def _shown(self) -> str:
        return ", ".join(f"{host}:{port}" for host, port in self.names)


async def _read(http: httpx2.AsyncClient, host: str, port: int) -> Capacity | None:
    url = httpx2.URL(scheme="http", host=host, port=port, path="/metrics")
    return await fetch_capacity(http, url)


class RoutedTransport(httpx2.AsyncBaseTransport):
    """Sends each call (a POST) to the replica `replicas` chooses, other requests (the model
    list) and every call before the first reading where they were addressed."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, replicas: Replicas) -> None:
        self._inner = inner
        self._replicas = replicas

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        replica = self._replicas.choose() if request.method == "POST" else None
        if replica is None:
            return await self._inner.handle_async_request(request)
        request.url = request.url.copy_with(host=replica.host, port=replica.port)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx2.TransportError:
            self._replicas.forget(replica)
            raise
        if response.status_code >= 500:
            self._replicas.forget(replica)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
