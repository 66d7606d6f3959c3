"""The LLM gate: no receives while the LLM is down, work resumes when it answers, the in-flight
limit falls when vLLM saturates, and a restart mid-burst loses nothing.

Against the vLLM simulator over real HTTP (devstack.fakes.llm), moto's SQS and the real
worker in this event loop; every figure asserted is a count (queue, engine, metric), never a
duration. The saturation and the restart run on both engines (`engine_case`: `sim`, and `vllm`,
vLLM 0.32 on CPU with `--max-num-seqs 4`, marked `vllm` and `slow`), read through what vLLM
itself serves (tests/support/engines.py); vLLM is stopped as Kubernetes stops its pod (SIGTERM,
SIGKILL after a grace) and started again with its real start. On queues with maxReceiveCount 1
(`once_queues`), so a message received twice would be in the DLQ.

Duration: the `sim` pair about 110 s. The `vllm` pair on 2 cores shared with two other vLLMs
(load average 6 to 17): 812 s for vLLM's start (given 900 s; START_TIMEOUT_S is 300), 289 s of
saturation, 927 s of restart with its second start (docs/configuration.md, "Against real
vLLM"); `--log-level=INFO -rP` prints each scenario's figures.
"""

import asyncio
import logging
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx2
import pytest
from devstack.fakes.llm import Calibration
from devstack.local_llm import START_TIMEOUT_S
from devstack.queues import FeedbackQueues, create_feedback_queues
from feedback_worker.errors import LlmUnavailable
from feedback_worker.handler import CALLS_PER_RECEIVE
from feedback_worker.llm_gate import (
    Capacity,
    GateReason,
    GateState,
    LlmGate,
    free_places,
    learnt_batch,
    next_limit,
    next_limit_over_replicas,
    read_capacity,
)
from feedback_worker.slots import Bounds
from llm_common.telemetry.metrics import REGISTRY
from mypy_boto3_sqs import SQSClient

from tests.support.engines import Engine, SimulatedEngine, VllmEngine
from tests.support.factories import StartWorker
from tests.support.fakes import CallbackReceiver, SimulatedLlm, simulated_llm
from tests.support.queues import (
    body_request_id,
    dead_letter_reason,
    enqueue,
    queue_counts,
    receive_all,
)
from tests.support.vllm import RunningVllm, running_vllm
from tests.support.waiting import eventually

log = logging.getLogger(__name__)

SIM_MODEL = "sim-7b"
WAITS_FOR_GATE = "waits for the LLM gate"
"""The handler's log line for a call that failed with the gate (handler.py)."""
UNFIT = "unfit to show"
"""In the DeadLetterReason of a message whose two drafts failed the content checks (llm.py)."""

Reading = TypeVar("Reading")


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


def limit() -> float:
    return gauge("feedback_worker_llm_limit") or 0


async def until(
    read: Callable[[], Reading], condition: Callable[[Reading], bool], within_s: float
) -> Reading:
    """The first reading that meets `condition`."""
    readings: list[Reading] = []

    def met() -> bool:
        readings.append(read())
        return condition(readings[-1])

    await eventually(met, within_s)
    return readings[-1]


def on_sim(sim: SimulatedLlm, **overrides: str) -> dict[str, str]:
    return {
        "LLM_BASE_URL": f"{sim.url}/v1",
        "LLM_MODEL": SIM_MODEL,
        "LLM_CAPACITY_POLL_SECONDS": "0.2",
        **overrides,
    }


@pytest.fixture
def sim() -> Iterator[SimulatedLlm]:
    with simulated_llm(Calibration.published(max_num_seqs=8), time_scale=50) as server:
        yield server


async def test_while_the_llm_is_down_nothing_is_received_and_work_resumes_after(
    start_worker: StartWorker,
    sqs: SQSClient,
    feedback_queues: FeedbackQueues,
    receiver: CallbackReceiver,
    sim: SimulatedLlm,
) -> None:
    await start_worker(**on_sim(sim))
    await eventually(lambda: gauge("feedback_worker_llm_gate_open") == 1)
    sim.stop()
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
    sim.start(load_s=50)
    await eventually(lambda: len(receiver.deliveries()) == 5)
    assert sorted(d["webhook_id"] for d in receiver.deliveries()) == [
        f"down-{member}" for member in range(1, 6)
    ]
    assert sim.stats()["failures"] == 0  # not one call reached the loading engine
    assert queue_counts(sqs, feedback_queues.dead_letters) == (0, 0)


async def test_a_probe_that_answers_while_calls_fail_lets_one_trial_call_at_a_time(
    start_worker: StartWorker,
    sqs: SQSClient,
    llm: SimulatedLlm,
    receiver: CallbackReceiver,
) -> None:
    # The LLM lists its model (the probe answers) while every call gets a 503, as a proxy
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


# The same two scenarios on the simulator and on real vLLM (tests/support/engines.py).

MAX_NUM_SEQS = 4
"""vLLM's --max-num-seqs for both engines: a batch of 4, so a burst of 16 calls mostly waits."""
TARGET_WAITING = 2
CALLS_AT_START = 16
"""WORKER_CONCURRENCY and LLM_START_LIMIT of the saturation: 4 x what the engine runs."""
VLLM_MAX_TOKENS = 32
"""Gemma 3 270M on 2 shared CPU cores decoded 2 to 11 tokens/s a batch (load average 7 to 17):
a short draft keeps a call under a minute."""
SHORT_TEMPLATE = "$personal_challenges\n$group_challenges\n피드백:"
"""A prompt of ~80 tokens instead of the default's 258 (prefill ran at 13 to 39 tokens/s), whose
own text (with the system prompt, 21 characters) is too short to be echoed (content.py)."""


@dataclass(frozen=True)
class EngineCase:
    """One engine under the gate, with what the worker needs to call it."""

    engine: Engine
    worker_env: dict[str, str]
    saturation_burst: int
    restart_burst: int
    within_s: float
    """Bound on each wait for the worker's progress on this engine."""


@pytest.fixture(scope="module")
def _vllm_for_gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningVllm]:
    """vLLM with a batch of MAX_NUM_SEQS, one start for both scenarios (the restart adds one)."""
    with running_vllm(
        tmp_path_factory.mktemp("vllm-gate"), "--max-num-seqs", str(MAX_NUM_SEQS)
    ) as server:
        yield server


def sim_case() -> Iterator[EngineCase]:
    # A call ~1.3 s of real time; a restart's model load 4 s.
    calibration = Calibration.published(max_num_seqs=MAX_NUM_SEQS)
    with simulated_llm(calibration, time_scale=2, model=SIM_MODEL) as sim:
        yield EngineCase(
            SimulatedEngine(sim, SIM_MODEL, load_s=8),
            on_sim(sim),
            saturation_burst=80,
            restart_burst=40,
            within_s=90,
        )


def vllm_case(server: RunningVllm, template: Path) -> EngineCase:
    template.write_text(SHORT_TEMPLATE, encoding="utf-8")
    env = {
        "LLM_BASE_URL": server.base_url,
        "LLM_MODEL": server.model,
        "LLM_CAPACITY_POLL_SECONDS": "0.2",
        "LLM_MAX_TOKENS": str(VLLM_MAX_TOKENS),
        # No call may time out, however slow the shared CPU: a timeout is no saturation figure.
        "LLM_TIMEOUT_SECONDS": "600",
        "PROMPT_TEMPLATE_FILE": str(template),
        # A 270M base model's 32 tokens: judged, but by what such a draft can pass.
        "CONTENT_MIN_CHARS": "1",
        "CONTENT_MIN_KOREAN_RATIO": "0",
    }
    return EngineCase(
        VllmEngine(server), env, saturation_burst=16, restart_burst=16, within_s=START_TIMEOUT_S
    )


@pytest.fixture(
    params=[
        "sim",
        pytest.param(
            "vllm",
            marks=[
                pytest.mark.slow,
                pytest.mark.vllm,
                pytest.mark.timeout(3 * START_TIMEOUT_S + 300),
            ],
        ),
    ]
)
def engine_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineCase]:
    if request.param == "vllm":
        server = request.getfixturevalue("_vllm_for_gate")
        yield vllm_case(server, tmp_path / "template.txt")
    else:
        yield from sim_case()


@pytest.fixture
def once_queues(sqs: SQSClient) -> FeedbackQueues:
    """Queues that dead-letter a message on its second receive (maxReceiveCount 1): a message
    the worker gave back, or held past its visibility, would reach the DLQ, so a burst
    accounted for without one there was received once, each message."""
    return create_feedback_queues(
        sqs, prefix=f"gate-{uuid.uuid4().hex[:8]}", max_receive_count=1, visibility_timeout=60
    )


def on_queues(queues: FeedbackQueues) -> dict[str, str]:
    return {
        "FEEDBACK_QUEUE_URL": queues.requests,
        "FEEDBACK_DLQ_URL": queues.dead_letters,
        "RESULT_QUEUE_URL": queues.results,
        "VISIBILITY_TIMEOUT_SECONDS": "60",
    }


@dataclass(frozen=True)
class WorkerCounts:
    """The worker's own counters (this process's workers, so read as differences)."""

    failed_calls: float
    """LLM calls that failed: timeouts, refusals, 5xx, connections lost."""
    drafts: float
    """Completions the content checks judged, each once: passed, trimmed, redrafted or failed."""

    @classmethod
    def now(cls, model: str) -> "WorkerCounts":
        failed = {"model": model, "outcome": "error"}
        return cls(
            REGISTRY.get_sample_value("feedback_worker_llm_duration_seconds_count", failed) or 0,
            family_total("feedback_worker_content_checks_total"),
        )

    def since(self, before: "WorkerCounts") -> "WorkerCounts":
        return WorkerCounts(
            self.failed_calls - before.failed_calls,
            self.drafts - before.drafts,
        )


def family_total(sample: str) -> float:
    return sum(
        found.value
        for family in REGISTRY.collect()
        for found in family.samples
        if found.name == sample
    )


def assert_delivered_once(
    receiver: CallbackReceiver, sqs: SQSClient, queues: FeedbackQueues, ids: list[str]
) -> None:
    """Each request delivered once (the webhook id is the request id), or else dead-lettered
    for unfit content, which a 270M model's short draft may be: none for the LLM's absence."""
    delivered = [d["webhook_id"] for d in receiver.deliveries()]
    dead = receive_all(sqs, queues.dead_letters)
    assert len(delivered) == len(set(delivered))  # no duplicate callback
    assert sorted(delivered + [body_request_id(m) for m in dead]) == sorted(ids)
    assert all(UNFIT in dead_letter_reason(m) for m in dead)


def burst(sqs: SQSClient, queues: FeedbackQueues, prefix: str, count: int) -> list[str]:
    ids = [f"{prefix}-{member}" for member in range(1, count + 1)]
    for member, request_id in enumerate(ids, start=1):
        enqueue(sqs, queues.requests, member_id=member, request_id=request_id)
    return ids


async def until_settled(
    receiver: CallbackReceiver,
    sqs: SQSClient,
    queues: FeedbackQueues,
    count: int,
    within_s: float,
) -> None:
    """Every message of the burst deleted, delivered or dead-lettered (counted only once moved:
    the worker's own DLQ count lags the move)."""

    def settled() -> bool:
        moved = len(receiver.deliveries()) + queue_counts(sqs, queues.dead_letters)[0]
        return moved >= count and queue_counts(sqs, queues.requests) == (0, 0)

    await eventually(settled, within_s)


async def test_when_vllm_saturates_the_limit_falls_to_what_it_runs(
    engine_case: EngineCase,
    start_worker: StartWorker,
    sqs: SQSClient,
    once_queues: FeedbackQueues,
    receiver: CallbackReceiver,
) -> None:
    engine, within = engine_case.engine, engine_case.within_s
    before = WorkerCounts.now(engine.model)
    ids = burst(sqs, once_queues, "sat", engine_case.saturation_burst)
    await start_worker(
        **engine_case.worker_env,
        **on_queues(once_queues),
        WORKER_CONCURRENCY=str(CALLS_AT_START),
        LLM_START_LIMIT=str(CALLS_AT_START),
        LLM_TARGET_WAITING=str(TARGET_WAITING),
    )
    # The start overran the batch: the engine's own figures, from its /metrics. vLLM admits a
    # burst into its batch over a few steps (it read running 1, waiting 11 first on CPU).
    saturated = await until(
        engine.capacity,
        lambda c: c.running == MAX_NUM_SEQS and c.waiting > TARGET_WAITING,
        within,
    )

    # (running 4 + target 2) / (4 + 12 waiting) of the 16 calls in flight: 6.
    await eventually(lambda: limit() <= saturated.running + TARGET_WAITING, within)
    await until_settled(receiver, sqs, once_queues, len(ids), within * 2)
    assert_delivered_once(receiver, sqs, once_queues, ids)
    counts = WorkerCounts.now(engine.model).since(before)
    assert counts.failed_calls == 0  # not one call timed out or failed
    log.info("saturated at %s; limit %s at the end; %s", saturated, limit(), counts)


async def test_a_restart_mid_burst_delivers_every_request_once(
    engine_case: EngineCase,
    start_worker: StartWorker,
    sqs: SQSClient,
    once_queues: FeedbackQueues,
    receiver: CallbackReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine, within = engine_case.engine, engine_case.within_s
    before, completed_before = WorkerCounts.now(engine.model), engine.completions()
    closed_before = gauge("feedback_worker_llm_gate_closed_seconds_total") or 0
    ids = burst(sqs, once_queues, "rs", engine_case.restart_burst)
    await start_worker(
        **engine_case.worker_env,
        **on_queues(once_queues),
        WORKER_CONCURRENCY=str(2 * MAX_NUM_SEQS),
        WORKER_PREFETCH="0",
        LLM_TARGET_WAITING=str(TARGET_WAITING),
    )
    # Mid-burst: some settled, calls in flight in the engine.
    await eventually(
        lambda: (
            WorkerCounts.now(engine.model).since(before).drafts >= 2
            and engine.capacity().running > 0
        ),
        within,
    )
    await asyncio.to_thread(engine.stop)
    await eventually(lambda: gauge("feedback_worker_llm_gate_open") == 0)
    # The calls the stop cut fail, and their messages wait for the gate.
    await eventually(lambda: any(WAITS_FOR_GATE in r.getMessage() for r in caplog.records))

    # Closed: no receive starts (three long polls' worth), with messages left to receive.
    counts = queue_counts(sqs, once_queues.requests)
    await asyncio.sleep(3)
    assert queue_counts(sqs, once_queues.requests) == counts
    assert counts[0] > 0

    await asyncio.to_thread(engine.start)  # the engine refuses connections until it is up
    await eventually(lambda: gauge("feedback_worker_llm_gate_open") == 1, within)
    await until_settled(receiver, sqs, once_queues, len(ids), within * 2)
    assert_delivered_once(receiver, sqs, once_queues, ids)
    settled = WorkerCounts.now(engine.model).since(before)
    # Nothing generated twice: every completion the engine counted (the stopped process's and
    # the new one's; a call the stop cut is no completion) reached the worker and was judged
    # once, and each message was received once (once_queues).
    assert engine.completions() - completed_before == settled.drafts
    cut = [r.getMessage() for r in caplog.records if WAITS_FOR_GATE in r.getMessage()]
    closed_s = (gauge("feedback_worker_llm_gate_closed_seconds_total") or 0) - closed_before
    log.info(
        "gate closed %.1fs; %d calls cut by the stop (%s); %s", closed_s, len(cut), cut[0], settled
    )


async def test_after_an_outage_the_limit_doubles_again_from_the_start_limit() -> None:
    # One sequence at a time, a call ~2 s of real time: four calls leave three waiting.
    with simulated_llm(Calibration.published(max_num_seqs=1), time_scale=1) as one_seq:
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
            await eventually(lambda: one_seq.stats()["waiting"] == 3)
            await take_work_slots(bounds, 4)
            await gate.poll()  # 3 waiting, target 1: slow start ends, 4 x (1 + 1) / (1 + 3)
            assert bounds.limit == 2
            for call in calls:
                call.cancel()
            bounds.work.release(4)

            gate.call_failed(LlmUnavailable("refused", gate_reason=GateReason.UNREACHABLE))
            await eventually(lambda: gate.state is GateState.TRIAL)  # the probe answered
            gate.call_answered()
            await eventually(lambda: one_seq.stats()["waiting"] == 0)

            # Back at the start limit and doubling, not 2 growing by a tenth (2, 3, 4, ...).
            assert bounds.limit == 8
            for doubled in (16, 32):
                await take_work_slots(bounds, bounds.limit - bounds.work.in_use)
                await gate.poll()
                assert bounds.limit == doubled
            await gate.stop()


async def test_without_vllm_metrics_the_gate_reopens_at_the_halved_limit_and_grows_slowly(
    llm: SimulatedLlm,
) -> None:
    # The LLM in exact-latency mode serves no /metrics: overloads and timeouts alone move the
    # limit.
    bounds = Bounds(concurrency=64, prefetch=0)
    async with httpx2.AsyncClient(timeout=30) as http:
        gate = LlmGate(bounds, http, llm.base_url.removesuffix("/v1"), 60, 1, 8)
        await gate.learn_metrics()
        assert bounds.limit == 64  # WORKER_CONCURRENCY, as the worker without a gate

        gate.call_failed(LlmUnavailable("HTTP 503", gate_reason=GateReason.OVERLOADED))
        await eventually(lambda: gate.state is GateState.TRIAL)  # /v1/models answers
        gate.call_answered()
        assert bounds.limit == 32
        await take_work_slots(bounds, 32)
        await gate.poll()

        # A tenth more, not doubled back to the 64 that overloaded it one poll after reopening.
        assert bounds.limit == 36
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


def test_over_one_replica_the_law_is_the_single_reading_s() -> None:
    for limit, in_flight, reading in ((128, 128, Capacity(256, 256)), (100, 95, Capacity(100, 3))):
        assert next_limit_over_replicas(limit, in_flight, [reading], 16, False) == next_limit(
            limit, in_flight, reading, 16, False
        )


def test_a_replica_added_beside_a_full_one_is_filled_at_the_next_poll() -> None:
    # Four workers at 68 keep one replica at 256 running + 16 waiting; a second comes up empty.
    # Its 272 places are each worker's share of 272 held: each doubles, and the four together
    # send the new replica 272 calls at once, where the law alone would grow each by a tenth.
    readings = [Capacity(256, 16), Capacity(0, 0)]
    batch = learnt_batch(readings, 0)
    assert batch == 256
    assert free_places(readings, 16, batch) == 272
    assert next_limit_over_replicas(68, 68, readings, 16, False, batch) == (136, False)
    assert next_limit(68, 68, Capacity(256, 16), 16, slow_start=False) == (75, False)


def test_room_beside_a_crowded_replica_outweighs_its_waiting() -> None:
    # 100 wait on the old replica (more than both targets): summed, the law would cut every
    # limit; the new replica's 272 places are filled instead.
    readings = [Capacity(256, 100), Capacity(0, 0)]
    limit, _ = next_limit_over_replicas(89, 89, readings, 16, False, learnt_batch(readings, 0))
    assert limit == math.ceil(89 * (356 + 272) / 356)


def test_a_batch_once_seen_full_counts_its_free_places_when_nothing_waits() -> None:
    # Three replicas just added run 190 each beside a fourth at 200, nothing waiting: with the
    # batch seen at 256 the pods fill the 4 x 272 places now, not a tenth a poll.
    readings = [Capacity(200, 0), Capacity(190, 0), Capacity(190, 0), Capacity(190, 0)]
    assert learnt_batch(readings, 256) == 256
    assert free_places(readings, 16, 256) == 4 * 272 - 770
    assert next_limit_over_replicas(24, 24, readings, 16, False, 256) == (34, False)


def test_before_any_batch_is_seen_full_there_is_no_room_to_fill() -> None:
    assert free_places([Capacity(256, 20), Capacity(256, 17)], 16, 256) == 0
    # Nothing ever waited: how big a batch is, is not known (slow start grows instead).
    readings = [Capacity(30, 0), Capacity(0, 0)]
    assert learnt_batch(readings, 0) == 0
    assert free_places(readings, 16, 0) == 0
    assert next_limit_over_replicas(16, 16, readings, 16, True, 0) == (32, True)


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
