"""The LLM gate: no receives while the LLM is down, work resumes when it answers, the in-flight
limit falls when vLLM saturates, and a restart mid-burst loses nothing.

Against the vLLM simulator over real HTTP (devstack.fakes.vllm_sim), moto's SQS and the real
worker in this event loop; every figure asserted is a count (queue, simulator, metric), never
a duration.
"""

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from devstack.fakes.vllm_sim import Calibration, SimulatorThread
from devstack.queues import FeedbackQueues, create_feedback_queues
from feedback_worker.errors import LlmUnavailable
from feedback_worker.handler import CALLS_PER_RECEIVE
from feedback_worker.llm_gate import (
    Capacity,
    GateReason,
    GateState,
    LlmGate,
    next_limit,
    read_capacity,
)
from feedback_worker.slots import Bounds
from llm_common.telemetry.metrics import REGISTRY
from mypy_boto3_sqs import SQSClient

from tests.support.factories import StartWorker
from tests.support.fakes import CallbackReceiver, FakeLlm
from tests.support.queues import enqueue, queue_counts, receive_all
from tests.support.waiting import eventually

SIM_MODEL = "sim-7b"


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


def sim_stats(sim: SimulatorThread) -> dict[str, Any]:
    return httpx.get(f"{sim.control_url}/sim/stats").json()


def sim_control(sim: SimulatorThread, **change: Any) -> None:
    httpx.post(f"{sim.control_url}/sim/control", json=change, timeout=30).raise_for_status()


def on_sim(sim: SimulatorThread, **overrides: str) -> dict[str, str]:
    return {
        "LLM_BASE_URL": f"{sim.url}/v1",
        "LLM_MODEL": SIM_MODEL,
        "LLM_CAPACITY_POLL_SECONDS": "0.2",
        **overrides,
    }


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(Calibration.published(max_num_seqs=8), time_scale=50) as server:
        yield server


async def test_while_the_llm_is_down_nothing_is_received_and_work_resumes_after(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
    sim: SimulatorThread,
) -> None:
    await start_worker(**on_sim(sim))
    await eventually(lambda: gauge("feedback_worker_llm_gate_open") == 1)
    sim_control(sim, action="stop")
    await eventually(lambda: gauge("feedback_worker_llm_gate_open") == 0)

    for member in range(1, 6):
        enqueue(sqs, feedback_queues.requests, member_id=member, request_id=f"down-{member}")
    await asyncio.sleep(3)  # three long polls' worth: an ungated worker would have them all
    # No receive starts while the gate is closed; a long poll begun before it closed may bring
    # some, which are held for the gate, not handed back to be received again and again.
    counts = queue_counts(sqs, feedback_queues.requests)
    assert counts[0] > 0
    await asyncio.sleep(3)
    assert queue_counts(sqs, feedback_queues.requests) == counts

    # Back after a model load: the port refuses connections meanwhile (as vLLM's), so the gate
    # stays closed.
    sim_control(sim, action="start", load_s=50)
    await eventually(lambda: len(receiver.deliveries()) == 5)
    assert sorted(d["webhook_id"] for d in receiver.deliveries()) == [
        f"down-{member}" for member in range(1, 6)
    ]
    assert sim_stats(sim)["rejected"] == 0  # not one call reached the loading engine
    assert queue_counts(sqs, feedback_queues.dead_letters) == (0, 0)


async def test_a_probe_that_answers_while_calls_fail_lets_one_trial_call_at_a_time(
    start_worker: StartWorker,
    sqs: SQSClient,
    llm: FakeLlm,
    receiver: CallbackReceiver,
) -> None:
    # The fake LLM lists its model (the probe answers) while every call gets a 503, as a proxy
    # in front of a loading vLLM would: reopening on the probe alone would let a whole batch of
    # messages fail every time.
    queues = create_feedback_queues(
        sqs, prefix=f"trial-{uuid.uuid4().hex[:8]}", max_receive_count=10
    )
    on_queues = {"FEEDBACK_QUEUE_URL": queues.requests, "FEEDBACK_DLQ_URL": queues.dead_letters}
    llm.control(refuse=True, fail_status=503)
    for member in range(1, 9):
        enqueue(sqs, queues.requests, member_id=member, request_id=f"trial-{member}")
    # The gate starts open: the first receive brings all 8, two go to the LLM and fail.
    worker = await start_worker(**on_queues, WORKER_CONCURRENCY="2", WORKER_PREFETCH="6")
    calls_at_close = 2
    await eventually(lambda: llm.stats()["failures"] >= calls_at_close + 3, 30)
    worker.stop()
    await eventually(lambda: queue_counts(sqs, queues.requests) == (8, 0))

    # Past the first close every call was a trial by a message already held: the outage spent
    # no receive, except of a message that went back after CALLS_PER_RECEIVE failed calls.
    copies = receive_all(sqs, queues.requests, visibility_s=1)
    receives = sum(int(m["Attributes"]["ApproximateReceiveCount"]) - 1 for m in copies)
    assert llm.stats()["requests"] == llm.stats()["failures"]
    assert 8 <= receives <= 8 + llm.stats()["failures"] // CALLS_PER_RECEIVE

    llm.control(refuse=False)
    await start_worker(**on_queues, WORKER_CONCURRENCY="8")
    await eventually(lambda: len({d["webhook_id"] for d in receiver.deliveries()}) == 8, 60)
    assert queue_counts(sqs, queues.dead_letters) == (0, 0)
    assert gauge("feedback_worker_llm_gate_open") == 1


async def test_when_vllm_saturates_the_limit_falls_to_what_it_runs(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
) -> None:
    # 4 sequences at most, a call ~2.5 s of real time: 64 calls at once would mostly wait.
    calibration = Calibration.published(max_num_seqs=4)
    with SimulatorThread(calibration, time_scale=1) as slow:
        for member in range(1, 81):
            enqueue(sqs, feedback_queues.requests, member_id=member, request_id=f"sat-{member}")
        await start_worker(
            **on_sim(slow),
            WORKER_CONCURRENCY="64",
            LLM_START_LIMIT="64",
            LLM_TARGET_WAITING="2",
            LLM_TIMEOUT_SECONDS="60",
            VISIBILITY_TIMEOUT_SECONDS="30",
        )
        await eventually(lambda: sim_stats(slow)["waiting"] > 2)  # the start overran it

        # (running 4 + target 2) / (4 + ~60 waiting) of 64: about 6.
        await eventually(lambda: (gauge("feedback_worker_llm_limit") or 64) <= 8)
        assert sim_stats(slow)["disconnected"] == 0


async def test_a_restart_mid_burst_delivers_every_request_once(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
) -> None:
    with SimulatorThread(Calibration.published(max_num_seqs=8), time_scale=2) as sim:
        for member in range(1, 41):
            enqueue(sqs, feedback_queues.requests, member_id=member, request_id=f"rs-{member}")
        await start_worker(**on_sim(sim), WORKER_CONCURRENCY="16", LLM_TARGET_WAITING="2")
        await eventually(lambda: len(receiver.deliveries()) >= 8)

        sim_control(sim, action="stop")
        await asyncio.sleep(1)
        sim_control(sim, action="start", load_s=4)

        await eventually(lambda: len({d["webhook_id"] for d in receiver.deliveries()}) == 40, 90)
        assert queue_counts(sqs, feedback_queues.dead_letters) == (0, 0)
        assert sim_stats(sim)["aborted"] > 0  # the stop did interrupt calls in flight
    await eventually(lambda: queue_counts(sqs, feedback_queues.requests) == (0, 0))


async def test_after_an_outage_the_limit_doubles_again_from_the_start_limit() -> None:
    # One sequence at a time, a call ~2 s of real time: four calls leave three waiting.
    with SimulatorThread(Calibration.published(max_num_seqs=1), time_scale=1) as one_seq:
        bounds = Bounds(concurrency=64, prefetch=0)
        async with httpx2.AsyncClient(timeout=30) as http:
            gate = LlmGate(bounds, http, one_seq.url, 60, 1, 8)
            calls = [
                asyncio.create_task(
                    http.post(
                        f"{one_seq.url}/v1/chat/completions",
                        json={"model": SIM_MODEL, "messages": [{"role": "user", "content": "hi"}]},
                    )
                )
                for _ in range(4)
            ]
            await eventually(lambda: sim_stats(one_seq)["waiting"] == 3)
            await take_work_slots(bounds, 4)
            await gate.poll()  # 3 waiting, target 1: slow start ends, 4 x (1 + 1) / (1 + 3)
            assert bounds.limit == 2
            for call in calls:
                call.cancel()
            bounds.work.release(4)

            gate.call_failed(LlmUnavailable("refused", gate_reason=GateReason.UNREACHABLE))
            await eventually(lambda: gate.state is GateState.TRIAL)  # the probe answered
            gate.call_answered()
            await eventually(lambda: sim_stats(one_seq)["waiting"] == 0)

            # Back at the start limit and doubling, not 2 growing by a tenth (2, 3, 4, ...).
            assert bounds.limit == 8
            for doubled in (16, 32):
                await take_work_slots(bounds, bounds.limit - bounds.work.in_use)
                await gate.poll()
                assert bounds.limit == doubled
            await gate.stop()


async def take_work_slots(bounds: Bounds, count: int) -> None:
    for _ in range(count):
        await bounds.work.reserve(1)


# The control law and the limit on their own.


def test_waiting_beyond_the_target_scales_every_limit_to_the_batch() -> None:
    # Four workers at 128 each against one vLLM running 256, 256 waiting, target 16: each
    # goes to 128 * 272 / 512 = 68, so the four together ask for 272 = running + target.
    limit, slow_start = next_limit(128, 128, Capacity(256, 256), 16, slow_start=True)
    assert (limit, slow_start) == (68, False)


def test_a_queue_still_draining_does_not_cut_the_limit_again() -> None:
    # A poll later the 512 calls are still in flight (none can be taken back) and 240 still
    # wait: each worker stays near 68 (128 * 272 / 496 = 70), not 68 * 272 / 496 = 37.
    assert next_limit(68, 128, Capacity(256, 240), 16, slow_start=False) == (70, False)


def test_waiting_caused_by_others_brings_an_idle_limit_down_to_its_calls() -> None:
    assert next_limit(100, 20, Capacity(256, 256), 16, slow_start=False) == (10, False)


def test_nothing_waiting_doubles_in_slow_start_then_grows_by_a_tenth() -> None:
    assert next_limit(16, 16, Capacity(16, 0), 16, slow_start=True) == (32, True)
    assert next_limit(100, 95, Capacity(100, 3), 16, slow_start=False) == (110, False)


def test_an_unused_limit_does_not_grow() -> None:
    assert next_limit(100, 20, Capacity(20, 0), 16, slow_start=False) == (100, False)


def test_vllm_metrics_are_read_from_the_simulator_text() -> None:
    text = (
        '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} 7.0\n'
        '# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name="m"} 3.0\n'
    )
    assert read_capacity(text) == Capacity(7.0, 3.0)
    assert read_capacity("# TYPE other gauge\nother 1.0\n") is None


async def test_a_lower_limit_holds_new_calls_until_enough_finish() -> None:
    bounds = Bounds(concurrency=4, prefetch=0)
    for _ in range(4):
        await bounds.work.reserve(1)
    bounds.set_limit(2)
    waiting = asyncio.create_task(bounds.work.reserve(1))
    bounds.work.release(2)
    await asyncio.sleep(0)
    assert not waiting.done()  # 2 in flight, limit 2: still full
    bounds.work.release()
    await asyncio.wait_for(waiting, 5)
    assert bounds.work.in_use == 2


def test_a_trial_receives_one_message_and_nothing_ahead() -> None:
    bounds = Bounds(concurrency=32, prefetch=8)
    assert (bounds.work.size, bounds.received.size) == (32, 40)
    bounds.set_limit(1, ahead=False)
    assert (bounds.work.size, bounds.received.size) == (1, 1)
