"""bench/round_robin_proxy.py, kube-proxy's part in the bursts: a new connection goes to the next
replica that accepts it, so a stopped or loading replica gets none and one added gets its turn."""

import asyncio
import socket

import httpx
from devstack.processes import free_port

from bench import round_robin_proxy
from tests.support.fakes import simulated_llm
from tests.support.waiting import eventually

CONCURRENT = 100


async def test_connections_pass_over_a_replica_that_refuses_and_reach_one_added_later() -> None:
    with simulated_llm(latency_s=0.0) as ready, simulated_llm(latency_s=0.0) as loading:
        loading.stop()  # its port refuses connections, as vLLM's while it loads
        replicas = [loading.port, ready.port]
        service = free_port()
        balancer = asyncio.create_task(round_robin_proxy.serve(service, replicas))
        try:
            await eventually(lambda: _listening(service), what="the balancer")
            # New connections at once, each trying the refusing replica or the ready one first:
            # every one reaches the ready replica (none dropped for two refusals in a row).
            answers = await asyncio.gather(*(_models(service) for _ in range(CONCURRENT)))
            assert answers == [200] * CONCURRENT
            loading.start()
            await eventually(lambda: _listening(loading.port), what="the second replica")
            for _ in range(4):
                async with httpx.AsyncClient() as client:
                    await client.post(
                        f"http://127.0.0.1:{service}/v1/chat/completions",
                        json={"model": "sim-7b", "messages": [{"role": "user", "content": "hi"}]},
                    )
        finally:
            balancer.cancel()
        assert loading.stats()["requests"] == 2  # its turn every other connection once up
        assert ready.stats()["requests"] == 2


async def _models(port: int) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://127.0.0.1:{port}/v1/models")).status_code


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
