"""What the worker relies on from vLLM, pinned on the simulator and on real vLLM (CPU) alike.

Every figure of the LLM gate and of the burst bench was measured on `devstack.fakes.llm`;
these checks run the same assertions against it (param `sim`) and against vLLM 0.32 on CPU
(param `vllm`, started once with the flags below), so that where the two differ a check fails
and the simulator is changed to vLLM's behaviour, never the check to the simulator's.

Both serve with `--max-num-seqs 2 --max-num-queued-reqs 4 --scheduling-policy priority`: two
requests run, two more wait, a fifth is refused. Long requests are held open (`ignore_eos`,
vLLM's sampling parameter) and released by disconnecting, as a worker's timed-out call does.

Differences found between the simulator and vLLM 0.32 (CPU), each now vLLM's way in the
simulator (see docs/benchmarks.md, "Conformance to vLLM"):
- start-up: vLLM binds its port before loading the model but listens only once the engine is
  up, so `/health`, `/v1/models` and completions are all refused (connection refused) until
  then. The simulator answered `/health` 503, `/v1/models` 200 and completions 503 while
  loading; its port is now closed until the load ends.
- metric labels: vLLM labels every engine series `engine` ("0") besides `model_name`; the
  simulator had `model_name` only.
- `--max-num-queued-reqs`: vLLM answers 503 ("The engine is currently busy ...") when waiting +
  running would exceed it; the simulator had no bound (every request queued).
- `--scheduling-policy priority`: vLLM admits waiting requests lowest `priority` first; the
  simulator ignored the field (arrival order always).
- `ignore_eos`: vLLM's sampling parameter; the simulator ignored it (these checks need it to
  hold requests open, the worker never sends it). Then it wrote until `max_tokens` but said
  finish_reason "stop" there; vLLM says "length" (its EOS check comes first and is off).
- streaming: the simulator answered `stream: true` with a 400; vLLM streams server-sent events
  (role, a delta per engine step, finish_reason on the last, usage when asked, `[DONE]`) and
  aborts a stream whose client goes away. The simulator now does (its exact-latency mode, not an
  engine, still refuses streams).

Known and not modelled: vLLM's priority policy preempts the lowest-priority running request when
the KV cache runs out (the simulator reserves KV space at admission and never preempts); vLLM
takes the priority from an `X-Vllm-Priority` header before the field.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from devstack.fakes.llm import Calibration, SchedulingPolicy
from devstack.local_llm import START_TIMEOUT_S
from devstack.local_model import MODEL_ALIAS
from devstack.processes import free_port
from feedback_worker.llm_gate import Capacity, read_capacity

from bench.engine_metrics import EngineReading, engine_reading
from tests.support.fakes import simulated_llm
from tests.support.scrape import Scrape
from tests.support.vllm import REFUSED, StartUpWatch, running_vllm
from tests.support.waiting import eventually, wait_until

MAX_NUM_SEQS = 2
MAX_NUM_QUEUED_REQS = 4
ENGINE_ARGS = (
    "--max-num-seqs", str(MAX_NUM_SEQS),
    "--max-num-queued-reqs", str(MAX_NUM_QUEUED_REQS),
    "--scheduling-policy", "priority",
)  # fmt: skip
HELD_TOKENS = 4000
"""A held request's length, released by disconnect: over 5 minutes on CPU vLLM (about 12 tokens/s
a sequence with two running) and 200 s on the simulator, far beyond any check. At 400, CI once saw
two held requests end (33 s) before the fourth's admission was read; it fits MAX_MODEL_LEN 4096."""
SIM_TIME_SCALE = 0.2
"""The simulator's published single stream (100 tokens/s) slowed to about CPU vLLM's (20)."""
SIM_LOAD_S = 2.0
"""The simulator's model load, in virtual seconds (10 s real at SIM_TIME_SCALE)."""
ADMIT_WAIT_S = 60.0
"""Bound for a sent request to show as running or waiting: well under a second on either
engine when the host is quiet; CI once saw more than 30 s (cause not found, hence the log)."""
IDLE_WAIT_S = 60.0
"""Bound for the engine to settle between checks (aborts within a second on either engine)."""


@dataclass(frozen=True)
class Llm:
    """One engine under test and what its start-up looked like from outside."""

    url: str
    model: str
    start_up: dict[str, set[str]]
    """Every answer `/health` and `/v1/models` gave before `/health` first answered 200."""
    log_tail: Callable[[], str] = lambda: ""
    """The engine's own log, last lines: what a failed check shows beside its assertion."""


@pytest.fixture(scope="module")
def sim_llm() -> Iterator[Llm]:
    """The simulator with the same flags, stopped and started again with a model load."""
    with simulated_llm(
        Calibration.published(max_num_seqs=MAX_NUM_SEQS),
        time_scale=SIM_TIME_SCALE,
        model=MODEL_ALIAS,
        max_num_queued_reqs=MAX_NUM_QUEUED_REQS,
        scheduling_policy=SchedulingPolicy.PRIORITY,
    ) as sim:
        sim.stop()
        watch = StartUpWatch(sim.url).start()
        sim.start(SIM_LOAD_S)
        yield Llm(url=sim.url, model=MODEL_ALIAS, start_up=watch.seen())


@pytest.fixture(scope="module")
def vllm_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Llm]:
    """vLLM on CPU with ENGINE_ARGS, watched from its launch: one start for the whole module."""
    port = free_port()
    watch = StartUpWatch(f"http://127.0.0.1:{port}").start()
    with running_vllm(tmp_path_factory.mktemp("vllm"), *ENGINE_ARGS, port=port) as server:
        yield Llm(server.url, server.model, watch.seen(), log_tail=server.process.tail)


@pytest.fixture(
    scope="module",
    params=[
        "sim",
        pytest.param(
            "vllm",
            marks=[pytest.mark.slow, pytest.mark.vllm, pytest.mark.timeout(START_TIMEOUT_S + 300)],
        ),
    ],
)
def llm(request: pytest.FixtureRequest) -> Llm:
    engine: Llm = request.getfixturevalue(f"{request.param}_llm")
    return engine


@pytest.fixture(autouse=True)
def idle_between_checks(llm: Llm) -> Iterator[None]:
    """Each check starts and ends with nothing running or waiting, so none sees another's."""
    wait_until(lambda: capacity(llm) == Capacity(0, 0), IDLE_WAIT_S, "an idle engine")
    yield
    wait_until(lambda: capacity(llm) == Capacity(0, 0), IDLE_WAIT_S, "an idle engine")


def capacity(llm: Llm) -> Capacity | None:
    """The reading the gate takes from `/metrics`, with the gate's own parser."""
    return read_capacity(Scrape.of(f"{llm.url}/metrics").text)


def in_engine(llm: Llm) -> float:
    """Requests running or waiting."""
    reading = capacity(llm)
    return reading.running + reading.waiting if reading else 0.0


def generated_tokens(llm: Llm) -> float:
    return Scrape.of(f"{llm.url}/metrics").value(
        "vllm:generation_tokens_total", engine="0", model_name=llm.model
    )


def chat(llm: Llm, max_tokens: int, **extra: Any) -> dict[str, Any]:
    prompt = "Write a long story about a lighthouse keeper and the sea."
    return {
        "model": llm.model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        **extra,
    }


async def complete(llm: Llm, max_tokens: int, **extra: Any) -> httpx.Response:
    """One completion as the worker calls it (no streaming); cancelling the task closes the
    connection, which is how vLLM learns that the client went away."""
    body = chat(llm, max_tokens, **extra)
    async with httpx.AsyncClient(timeout=None) as client:
        return await client.post(f"{llm.url}/v1/chat/completions", json=body)


@asynccontextmanager
async def holding(llm: Llm, count: int) -> AsyncIterator[list[asyncio.Task[httpx.Response]]]:
    """`count` long requests in the engine (running, then waiting), disconnected at the end."""
    held: list[asyncio.Task[httpx.Response]] = []
    try:
        for _ in range(count):
            held.append(asyncio.create_task(complete(llm, HELD_TOKENS, ignore_eos=True)))
            try:
                await eventually(
                    lambda: in_engine(llm) == len(held) or bool(answered_early(held)),
                    ADMIT_WAIT_S,
                    f"{len(held)} requests in the engine",
                )
                assert not answered_early(held), f"a held request ended: {answered_early(held)}"
            except AssertionError as failed:
                raise AssertionError(f"{failed}; {capacity(llm)}\n{llm.log_tail()}") from None
        yield held
    finally:
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)


def answered_early(held: list[asyncio.Task[httpx.Response]]) -> str:
    """What the engine answered a held request that ended (a refusal, an error), else ''."""
    for task in held:
        if task.done():
            error = task.exception()
            return repr(error) if error else f"{task.result().status_code} {task.result().text}"
    return ""


def test_health_and_models_answer_once_up(llm: Llm) -> None:
    # The gate reopens on /health 200 and the worker's start-up check lists /v1/models.
    assert httpx.get(f"{llm.url}/health").status_code == 200
    models = httpx.get(f"{llm.url}/v1/models").json()
    assert [entry["id"] for entry in models["data"]] == [llm.model]


def test_during_start_up_health_and_models_refuse_connections(llm: Llm) -> None:
    # The gate stays closed while /health is not 200 and counts a refused connection as the
    # LLM unreachable; nothing may answer 200 before the engine is up.
    assert llm.start_up == {"/health": {REFUSED}, "/v1/models": {REFUSED}}


def test_the_gate_reads_running_and_waiting_labelled_by_model_and_engine(llm: Llm) -> None:
    # The gate sums vllm:num_requests_running and _waiting over their series; dashboards and
    # the chart's rules select them by model_name.
    scrape = Scrape.of(f"{llm.url}/metrics")
    families = scrape.families()
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
        assert families[name] == "gauge"
        assert scrape.value(name, engine="0", model_name=llm.model) == 0
    assert families["vllm:generation_tokens"] == "counter"
    assert capacity(llm) == Capacity(0, 0)


async def test_beyond_max_num_seqs_requests_wait(llm: Llm) -> None:
    # The gate's control law: what runs is capped by --max-num-seqs, the rest is `waiting`.
    async with holding(llm, MAX_NUM_QUEUED_REQS):
        assert capacity(llm) == Capacity(MAX_NUM_SEQS, MAX_NUM_QUEUED_REQS - MAX_NUM_SEQS)


async def test_past_max_num_queued_reqs_a_request_gets_503_at_once(llm: Llm) -> None:
    # The worker takes a 503 as an overload: its message goes back to the queue, the limit
    # halves. The refused request must not have joined the queue.
    async with holding(llm, MAX_NUM_QUEUED_REQS):
        refused = await complete(llm, 4)
        assert refused.status_code == 503
        assert capacity(llm) == Capacity(MAX_NUM_SEQS, MAX_NUM_QUEUED_REQS - MAX_NUM_SEQS)


async def test_a_disconnected_request_is_aborted_and_its_generation_stops(llm: Llm) -> None:
    # A worker whose call times out closes the connection: vLLM must stop spending the batch
    # on it, or a timed-out call keeps costing capacity the gate thinks is free.
    async with holding(llm, 1):
        before = generated_tokens(llm)
        await eventually(lambda: generated_tokens(llm) > before, what="tokens generated")
    await eventually(lambda: capacity(llm) == Capacity(0, 0), what="the abort")
    stopped_at = generated_tokens(llm)
    await asyncio.sleep(1)  # a second of decoding would be ~10 tokens on either engine
    assert generated_tokens(llm) == stopped_at


async def test_an_aborted_request_counts_its_tokens_as_generated_and_not_as_finished(
    llm: Llm,
) -> None:
    # The burst bench's wasted tokens (bench/engine_metrics.py): vllm:generation_tokens_total
    # beyond the finished requests' vllm:request_generation_tokens; a request the client
    # abandoned must be in neither that histogram nor vllm:request_success_total.
    before = reading(llm)
    async with holding(llm, 1):
        await eventually(lambda: reading(llm).generation_tokens > before.generation_tokens)
    await eventually(lambda: capacity(llm) == Capacity(0, 0), what="the abort")
    aborted = reading(llm) - before
    assert (await complete(llm, 3)).status_code == 200
    done = reading(llm) - before

    assert aborted.completed == aborted.completed_output_tokens == 0
    assert aborted.wasted_tokens == aborted.generation_tokens > 0
    assert done.completed == 1
    assert done.completed_output_tokens == 3
    assert done.completed_prompt_tokens > 0
    assert done.wasted_tokens == aborted.wasted_tokens


def reading(llm: Llm) -> EngineReading:
    return engine_reading(Scrape.of(f"{llm.url}/metrics").text)


async def test_under_priority_scheduling_a_lower_priority_value_is_admitted_first(
    llm: Llm,
) -> None:
    # A request sent with `priority` 0 overtakes waiting ones with a higher value (vLLM's
    # order: lowest value first, then arrival).
    async with holding(llm, MAX_NUM_SEQS) as held:
        later = asyncio.create_task(complete(llm, 4, priority=10))
        await eventually(lambda: capacity(llm) == Capacity(MAX_NUM_SEQS, 1), what="one waiting")
        sooner = asyncio.create_task(complete(llm, 4, priority=0))
        await eventually(lambda: capacity(llm) == Capacity(MAX_NUM_SEQS, 2), what="two waiting")
        held[0].cancel()  # one place in the batch frees
        first, _ = await asyncio.wait({later, sooner}, return_when=asyncio.FIRST_COMPLETED)
        assert first == {sooner}
        assert (await sooner).status_code == (await later).status_code == 200


async def test_a_draft_cut_by_max_tokens_says_length(llm: Llm) -> None:
    # The worker's content check refuses a draft whose finish_reason is `length`: it ends
    # mid-sentence.
    response = await complete(llm, 3)
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


async def stream_events(llm: Llm, max_tokens: int, **extra: Any) -> list[str]:
    """A streamed completion's server-sent events (each `data:` payload, in order)."""
    body = chat(llm, max_tokens, stream=True, **extra)
    events: list[str] = []
    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream("POST", f"{llm.url}/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
    return events


async def test_a_stream_sends_the_role_then_the_text_as_it_is_written_then_usage_and_done(
    llm: Llm,
) -> None:
    # An interactive client shows each delta as it comes; the mixed-traffic bench reads its
    # time to first token and the gaps between tokens from them (bench/mixed_traffic.py).
    events = await stream_events(
        llm, 8, ignore_eos=True, temperature=0, stream_options={"include_usage": True}
    )

    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    first, *deltas, usage = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(deltas) > 1
    reasons = [chunk["choices"][0]["finish_reason"] for chunk in deltas]
    assert reasons == [None] * (len(deltas) - 1) + ["length"]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 8
    whole = (await complete(llm, 8, ignore_eos=True, temperature=0)).json()
    text = "".join(chunk["choices"][0]["delta"]["content"] for chunk in deltas)
    assert text == whole["choices"][0]["message"]["content"]


async def test_a_stream_without_stream_options_ends_with_its_finish_reason_then_done(
    llm: Llm,
) -> None:
    # Usage comes only when asked for (OpenAI's and vLLM's `stream_options`).
    events = await stream_events(llm, 3, ignore_eos=True)

    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert last["choices"][0]["finish_reason"] == "length"
    assert "usage" not in last


async def test_a_stream_whose_client_goes_away_is_aborted_and_its_generation_stops(
    llm: Llm,
) -> None:
    # A chat client whose user leaves closes the stream: vLLM must stop writing for it. The
    # first tokens come while the request still runs: streamed as written, not at the end.
    before = generated_tokens(llm)
    body = chat(llm, HELD_TOKENS, stream=True, ignore_eos=True)
    deltas: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(timeout=ADMIT_WAIT_S) as client,
        client.stream("POST", f"{llm.url}/v1/chat/completions", json=body) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                deltas.append(json.loads(line.removeprefix("data: "))["choices"][0]["delta"])
            if len(deltas) == 3:
                break
        running_while_read = capacity(llm)

    assert deltas[0]["role"] == "assistant"
    assert all("content" in delta for delta in deltas[1:])
    assert running_while_read == Capacity(1, 0)
    await eventually(lambda: capacity(llm) == Capacity(0, 0), what="the abort")
    stopped_at = generated_tokens(llm)
    assert stopped_at - before < HELD_TOKENS
    await asyncio.sleep(1)  # a second of decoding would be ~10 tokens on either engine
    assert generated_tokens(llm) == stopped_at
