"""bench/round_robin_proxy.py, kube-proxy's part in the bursts: a new connection goes to the next
replica that accepts it, so a stopped or loading replica gets none and one added gets its turn."""

import asyncio
import socket

import httpx
from devstack.processes import free_port

from bench import round_robin_proxy
from tests.support.fakes import simulated_llm
from tests.support.waiting import eventually


async def test_connections_pass_over_a_replica_that_refuses_and_reach_one_added_later() -> None:
    with simulated_llm(latency_s=0.0) as ready, simulated_llm(latency_s=0.0) as loading:
        loading.stop()  # its port refuses connections, as vLLM's while it loads
        replicas = [loading.port, ready.port]
        service = free_port()
        balancer = asyncio.create_task(round_robin_proxy.serve(service, replicas))
        try:
            await eventually(lambda: _listening(service), what="the balancer")
            for _ in range(4):  # a new connection each: every one reaches the ready replica
                async with httpx.AsyncClient() as client:
                    assert (await client.get(f"http://127.0.0.1:{service}/v1/models")).is_success
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


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
