"""LLM_REPLICAS: the worker reads every vLLM replica and sends each call to the one with the
most room, so a replica started mid-burst gets its batch where the Service alone would have
kept every call on the replica the worker reached first (feedback_worker/replicas.py)."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import pytest
from devstack.fakes.llm import Calibration
from feedback_worker.llm_gate import Capacity
from feedback_worker.memory import InMemorySource
from feedback_worker.replicas import Replica, Replicas, RoutedTransport
from feedback_worker.settings import WorkerSettings
from llm_common.telemetry.metrics import REGISTRY
from pydantic import ValidationError

from tests.support.factories import RunFeedback
from tests.support.fakes import CallbackReceiver, SimulatedLlm, simulated_llm
from tests.support.records import weekly_record
from tests.support.waiting import eventually

SIM_MODEL = "sim-7b"
BATCH = 4
REQUESTS = 60


def replicas_taking_calls() -> float | None:
    """The worker's own gauge of the replicas that answered its last poll."""
    return REGISTRY.get_sample_value("feedback_worker_llm_replicas")


def _answered(stats: dict[str, object]) -> int:
    success = stats["success"]
    assert isinstance(success, dict)
    return sum(success.values())


@contextmanager
def two_replicas() -> Iterator[tuple[SimulatedLlm, SimulatedLlm]]:
    batch = Calibration.published(max_num_seqs=BATCH)
    with (
        simulated_llm(batch, time_scale=5, model=SIM_MODEL) as first,
        simulated_llm(batch, time_scale=5, model=SIM_MODEL) as second,
    ):
        yield first, second


def burst_over(
    run_feedback: RunFeedback, first: SimulatedLlm, second: SimulatedLlm
) -> tuple[InMemorySource, asyncio.Task[object]]:
    """REQUESTS on an in-memory queue and a worker balancing over both replicas; LLM_BASE_URL,
    the Service, reaches the first only, as kube-proxy's pinned connections did."""
    source = InMemorySource()
    for member_id in range(1, REQUESTS + 1):
        source.send(weekly_record(member_id, f"{member_id}-w"), group_id=str(member_id))
    worker = asyncio.create_task(
        run_feedback(
            source,
            LLM_BASE_URL=first.base_url,
            LLM_REPLICAS=f"127.0.0.1:{first.port},127.0.0.1:{second.port}",
            LLM_MODEL=SIM_MODEL,
            LLM_GATE_ENABLED="true",
            WORKER_CONCURRENCY="16",
            LLM_TARGET_WAITING="2",
            LLM_CAPACITY_POLL_SECONDS="0.2",
        )
    )
    return source, worker


async def test_a_replica_started_mid_burst_runs_a_full_batch_beside_the_first(
    run_feedback: RunFeedback, receiver: CallbackReceiver
) -> None:
    with two_replicas() as (first, second):
        second.stop()  # not Ready yet: its port refuses, as vLLM's while it loads
        source, worker = burst_over(run_feedback, first, second)
        await eventually(lambda: first.stats()["waiting"] > 0, what="the first batch full")
        assert replicas_taking_calls() == 1
        second.start()
        await eventually(lambda: second.stats()["running"] == BATCH, what="the second's batch")
        assert replicas_taking_calls() == 2
        await worker

        assert _answered(first.stats()) + _answered(second.stats()) == REQUESTS
        assert _answered(second.stats()) >= BATCH
    assert len(receiver.deliveries()) == REQUESTS
    assert source.counts() == (0, 0)


async def test_a_replica_lost_mid_burst_loses_no_request_and_takes_no_more_calls(
    run_feedback: RunFeedback, receiver: CallbackReceiver
) -> None:
    with two_replicas() as (first, second):
        source, worker = burst_over(run_feedback, first, second)
        await eventually(lambda: second.stats()["running"] == BATCH, what="both replicas busy")
        second.stop()  # its node is gone: the calls on it fail, its port refuses
        await worker

        # The calls it lost were aborted, not answered, and made again on the first: every
        # request answered once.
        assert second.stats()["aborted"] > 0
        assert _answered(first.stats()) + _answered(second.stats()) == REQUESTS
    assert len(receiver.deliveries()) == REQUESTS
    assert source.counts() == (0, 0)


async def test_a_replica_whose_call_failed_takes_no_call_before_it_answers_a_poll() -> None:
    def gone_or_answering(request: httpx2.Request) -> httpx2.Response:
        if request.url.host == "10.0.0.2":
            raise httpx2.ConnectError("refused", request=request)
        return httpx2.Response(200, json={})

    replicas = Replicas.from_names(["10.0.0.1", "10.0.0.2"], "http://vllm:8000/v1")
    replicas.known = [
        Replica("10.0.0.1", 8000, Capacity(200, 0)),
        Replica("10.0.0.2", 8000, Capacity(0, 0)),  # the least loaded: chosen first
    ]
    client = httpx2.AsyncClient(
        transport=RoutedTransport(httpx2.MockTransport(gone_or_answering), replicas)
    )
    with pytest.raises(httpx2.ConnectError):
        await client.post("http://vllm:8000/v1/chat/completions")
    for _ in range(5):
        assert (await client.post("http://vllm:8000/v1/chat/completions")).status_code == 200
    assert [r.host for r in replicas.known] == ["10.0.0.1"]
    assert replicas.known[0].sent == 5


def test_replicas_are_named_with_or_without_a_port() -> None:
    replicas = Replicas.from_names(
        ["vllm-replicas.feedback.svc", "10.0.0.7:8001"], "http://vllm.feedback.svc:8000/v1"
    )
    assert replicas.names == [("vllm-replicas.feedback.svc", 8000), ("10.0.0.7", 8001)]


def test_replicas_without_the_gate_are_refused(worker_env: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="LLM_REPLICAS needs LLM_GATE_ENABLED"):
        WorkerSettings.model_validate(
            {**worker_env, "LLM_REPLICAS": "vllm-replicas:8000", "LLM_GATE_ENABLED": "false"}
        )
