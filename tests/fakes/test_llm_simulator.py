"""The LLM fake (devstack.fakes.llm) schedules like vLLM, proven on its own counters and virtual
clock; in exact-latency mode it answers in the time it is told, and it fails, scripts, drips and
records as a test asks.

Engine tests drive the scheduler step by step (no real time at all); HTTP tests talk to the
server over loopback, with a large time scale so that virtual minutes pass in real seconds.
"""

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from devstack.fakes.llm import Calibration, Engine, Outcome

from tests.support.fakes import SimulatedLlm, simulated_llm

PUBLISHED = Calibration.published()
PROMPT = "가" * 450
CHAT = {"model": "sim-7b", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 400}


def steady_throughput(engine: Engine, concurrency: int, finished_needed: int) -> float:
    """Output tokens per virtual second with `concurrency` requests always outstanding."""
    for _ in range(concurrency):
        engine.submit(450, 400)
    finished, started_s, start_tokens = 0, 0.0, 0
    while finished < finished_needed:
        _, done = engine.step()
        for _ in done:
            engine.submit(450, 400)
        finished += len(done)
        if finished and not started_s:  # measure past the first wave's ramp-up
            started_s, start_tokens = engine.now_s, engine.counters.generation_tokens
    return (engine.counters.generation_tokens - start_tokens) / (engine.now_s - started_s)


def test_throughput_rises_with_concurrency_and_plateaus_at_max_num_seqs() -> None:
    rates = {c: steady_throughput(Engine(PUBLISHED), c, 3 * c) for c in (1, 16, 64, 256, 512)}

    assert rates[1] == pytest.approx(100, rel=0.1)  # the published single stream
    assert rates[1] < rates[16] < rates[64] < rates[256]
    assert rates[256] == pytest.approx(3_300, rel=0.1)  # the published plateau
    # Past max_num_seqs the extra requests only wait: no more tokens per second.
    assert rates[512] == pytest.approx(rates[256], rel=0.03)


def test_requests_past_max_num_seqs_wait_in_arrival_order() -> None:
    engine = Engine(Calibration.published(max_num_seqs=4))
    seqs = [engine.submit(10, 50) for _ in range(6)]

    engine.step()

    assert engine.running == seqs[:4]
    assert list(engine.waiting) == seqs[4:]
    while seqs[0].outcome is None:
        engine.step()
    engine.step()
    assert engine.running == seqs[4:]  # the waiting ones took the freed places, in order
    assert not engine.waiting


def test_kv_cache_budget_limits_the_batch_below_max_num_seqs() -> None:
    calibration = Calibration(0.01, 0.0001, 0.0, max_num_seqs=256, kv_cache_tokens=2_000)
    engine = Engine(calibration)
    for _ in range(10):
        engine.submit(450, 400)  # 850 tokens reserved each

    engine.step()

    assert len(engine.running) == 2
    assert len(engine.waiting) == 8


def test_max_tokens_cuts_the_answer_with_finish_reason_length() -> None:
    engine = Engine(PUBLISHED)
    seq = engine.submit(100, 20)
    while seq.outcome is None:
        engine.step()
    assert seq.outcome is Outcome.LENGTH
    assert seq.generated == 20


def test_output_lengths_fit_the_weekly_feedback() -> None:
    engine = Engine(PUBLISHED, seed=7)
    lengths = sorted(engine.submit(100, 1_000).wanted_tokens for _ in range(2_000))
    inside = [n for n in lengths if 150 <= n <= 300]
    assert len(inside) / len(lengths) > 0.93
    assert 215 < lengths[len(lengths) // 2] < 235


def test_ideal_is_the_full_batch_rate() -> None:
    # 20,000 feedbacks of 225 tokens at the published 3,300 tokens/s plateau.
    assert PUBLISHED.ideal_seconds(20_000 * 225, 20_000 * 450) == pytest.approx(1_364, rel=0.01)
    assert PUBLISHED.ideal_seconds(20_000 * 225, 20_000 * 450, replicas=2) == pytest.approx(
        682, rel=0.01
    )


# Over HTTP.


@pytest.fixture
def sim() -> Iterator[SimulatedLlm]:
    with simulated_llm(Calibration.published(max_num_seqs=4), time_scale=100) as server:
        yield server


def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.02)


def health_up(sim: SimulatedLlm) -> bool:
    try:
        return httpx.get(f"{sim.url}/health").status_code == 200
    except httpx.ConnectError:
        return False


def complete(sim: SimulatedLlm, body: dict[str, Any] = CHAT, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{sim.url}/v1/chat/completions", json=body, timeout=timeout)


def test_concurrent_calls_share_steps_and_the_rest_wait(sim: SimulatedLlm) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: complete(sim), range(8)))

    assert [a.status_code for a in answers] == [200] * 8
    counted = sim.stats()
    tokens = sum(a.json()["usage"]["completion_tokens"] for a in answers)
    assert counted["generation_tokens"] == tokens
    # Two waves of four in one batch each: about a quarter of the steps one at a time would take.
    assert counted["steps"] < tokens / 3
    assert counted["success"]["stop"] == 8


def test_answer_is_openai_shaped_and_cut_at_max_tokens(sim: SimulatedLlm) -> None:
    answer = complete(sim, {**CHAT, "max_tokens": 30}).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 30
    assert len(answer["choices"][0]["message"]["content"]) == 30
    assert answer["usage"]["prompt_tokens"] == 450


def test_a_fitted_simulator_writes_as_many_characters_a_token_as_its_engine() -> None:
    # The worker's content checks count characters: a CPU engine's 36-token drafts pass a
    # 40-character minimum that one character a token would fail.
    with simulated_llm(
        Calibration.published(max_num_seqs=4), time_scale=100, characters_per_token=2.5
    ) as fitted:
        answer = complete(fitted, {**CHAT, "max_tokens": 36}).json()

    assert answer["usage"]["completion_tokens"] == 36
    assert len(answer["choices"][0]["message"]["content"]) == 90


def test_disconnect_aborts_and_counts_its_tokens_as_wasted() -> None:
    with simulated_llm(PUBLISHED, time_scale=1) as slow:  # 100 tokens/s real: ~4 s to finish
        with pytest.raises(httpx.ReadTimeout):
            complete(slow, timeout=0.5)
        until(lambda: slow.stats()["aborted"] == 1, "the abort")
        counted = slow.stats()
    assert counted["running"] == 0
    assert counted["disconnected"] == 1
    assert counted["wasted_tokens"] > 0
    assert counted["wasted_tokens"] == counted["generation_tokens"]
    assert counted["success"] == {"stop": 0, "length": 0}


def test_refuse_answers_the_status_until_turned_off(sim: SimulatedLlm) -> None:
    sim.control(refuse=True, fail_status=503)
    assert complete(sim).status_code == 503
    sim.control(refuse=False)
    assert complete(sim).status_code == 200
    assert (sim.stats()["failures"], sim.stats()["completions"]) == (1, 1)


def test_stop_refuses_connections_and_start_loads_the_model_first(sim: SimulatedLlm) -> None:
    sim.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sim.url}/health")

    started = httpx.post(
        f"{sim.control_url}/sim/control", json={"action": "start", "load_s": 600}
    ).json()  # 6 s real at time scale 100
    assert started["loading_until_s"] - started["virtual_s"] > 590
    # As vLLM's: bound but not listening until the model is loaded (tests/conformance).
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sim.url}/health")
    with pytest.raises(httpx.ConnectError):
        complete(sim)

    until(lambda: health_up(sim), "the model load")
    assert sim.stats()["virtual_s"] >= started["loading_until_s"]
    assert complete(sim).status_code == 200


def test_stop_aborts_what_was_running_as_waste() -> None:
    with simulated_llm(PUBLISHED, time_scale=1) as slow:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(complete, slow)
            until(lambda: slow.stats()["generation_tokens"] > 0, "the first token")
            slow.stop()
            assert pending.result().status_code == 503
        counted = slow.stats()
    assert (counted["aborted"], counted["disconnected"]) == (1, 0)
    assert counted["wasted_tokens"] == counted["generation_tokens"] > 0


def streamed_lines(sim: SimulatedLlm, body: dict[str, Any]) -> Iterator[str]:
    """The `data:` payloads of a streamed answer, as they come."""
    with httpx.stream("POST", f"{sim.url}/v1/chat/completions", json=body, timeout=30) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if line.startswith("data: "):
                yield line.removeprefix("data: ")


def test_a_stream_writes_the_engines_characters_per_token_and_counts_a_completion() -> None:
    with simulated_llm(
        Calibration.published(max_num_seqs=4), time_scale=100, characters_per_token=2.5
    ) as fitted:
        body = {**CHAT, "max_tokens": 36, "stream": True}
        events = list(streamed_lines(fitted, body))
        counted = fitted.stats()

    deltas = [json.loads(event)["choices"][0]["delta"] for event in events[:-1]]
    assert len("".join(delta.get("content", "") for delta in deltas)) == 90
    assert (counted["completions"], counted["in_flight"], counted["success"]["length"]) == (1, 0, 1)


def test_a_stream_cut_by_a_stopped_engine_ends_with_an_error_then_done() -> None:
    with simulated_llm(PUBLISHED, time_scale=1) as slow:
        lines = streamed_lines(slow, {**CHAT, "stream": True})
        assert "role" in json.loads(next(lines))["choices"][0]["delta"]
        with ThreadPoolExecutor(1) as pool:
            stopping = pool.submit(slow.stop)
            rest = list(lines)
            stopping.result()
        counted = slow.stats()

    assert json.loads(rest[-2])["error"]["message"] == "engine stopped"
    assert rest[-1] == "[DONE]"
    assert (counted["aborted"], counted["disconnected"]) == (1, 0)


def test_exact_latency_mode_refuses_a_stream_and_says_why(exact: SimulatedLlm) -> None:
    body = {**CHAT, "model": "test-model", "stream": True}
    refused = complete(exact, body)

    assert refused.status_code == 400
    assert "exact-latency mode does not stream" in refused.json()["error"]["message"]


def test_metrics_carry_vllm_names_and_counts(sim: SimulatedLlm) -> None:
    answer = complete(sim).json()
    text = httpx.get(f"{sim.url}/metrics").text
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:generation_tokens_total",
        "vllm:prompt_tokens_total",
        "vllm:request_success_total",
        "vllm:e2e_request_latency_seconds_bucket",
        "sim_wasted_tokens_total",
    ):
        assert f"\n{name}{{" in text, name
    tokens = answer["usage"]["completion_tokens"]
    assert f'vllm:generation_tokens_total{{engine="0",model_name="sim-7b"}} {float(tokens)}' in text
    stop = 'engine="0",finished_reason="stop",model_name="sim-7b"'
    assert f"vllm:request_success_total{{{stop}}} 1.0" in text


def test_api_key_guards_the_openai_routes_only() -> None:
    with simulated_llm(PUBLISHED, time_scale=100, api_key="k-123") as guarded:
        assert complete(guarded).status_code == 401
        assert httpx.get(f"{guarded.url}/v1/models").status_code == 401
        assert httpx.get(f"{guarded.url}/health").status_code == 200
        models = httpx.get(f"{guarded.url}/v1/models", headers={"authorization": "Bearer k-123"})
        assert models.json()["data"][0]["id"] == "sim-7b"


# Exact-latency mode and faults: what the worker's tests set.

FEEDBACK = {
    "model": "test-model",
    "messages": [
        {"role": "system", "content": "너는 피드백 어시스턴트야."},
        {"role": "user", "content": "- 아침 산책 (성공)\n- 물 2리터 (실패)"},
    ],
}


@pytest.fixture
def exact() -> Iterator[SimulatedLlm]:
    with simulated_llm(model="test-model", latency_s=0.0) as server:
        yield server


def content_of(answer: httpx.Response) -> str | None:
    content: str | None = answer.json()["choices"][0]["message"]["content"]
    return content


def test_exact_latency_answers_every_call_in_that_time_however_many_at_once(
    exact: SimulatedLlm,
) -> None:
    exact.control(latency_s=0.5)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: complete(exact, FEEDBACK), range(8)))
    elapsed = time.monotonic() - started

    assert [a.status_code for a in answers] == [200] * 8
    assert 0.5 <= elapsed < 1.5  # no batching law: eight at once take what one takes
    assert exact.stats()["max_in_flight"] == 8
    assert "아침 산책 (성공), 물 2리터 (실패)" in str(content_of(answers[0]))
    # An OpenAI-compatible server that is not vLLM: the LLM gate finds no metrics to read.
    assert httpx.get(f"{exact.url}/metrics").status_code == 404


def test_latency_none_hands_the_answers_back_to_the_batching_engine(exact: SimulatedLlm) -> None:
    exact.control(latency_s=None)

    assert httpx.get(f"{exact.url}/health").status_code == 200
    assert complete(exact, {**FEEDBACK, "max_tokens": 5}).json()["usage"]["completion_tokens"] == 5
    assert exact.stats()["success"]["length"] == 1


def test_failures_carry_their_status_retry_after_and_an_openai_error(exact: SimulatedLlm) -> None:
    exact.control(fail_next=2, fail_status=429, retry_after="1")
    first, second, third = (complete(exact, FEEDBACK) for _ in range(3))

    assert (first.status_code, first.headers["retry-after"]) == (429, "1")
    assert first.json()["error"]["type"] == "server_error"
    assert (second.status_code, third.status_code) == (429, 200)

    exact.control(fail_next=1, fail_status=200)  # a proxy that reports errors under 200
    failed = complete(exact, FEEDBACK)
    assert (failed.status_code, "error" in failed.json()) == (200, True)
    assert exact.stats()["failures"] == 3


def test_fail_every_fails_every_nth_request(exact: SimulatedLlm) -> None:
    exact.control(fail_every=2)

    assert [complete(exact, FEEDBACK).status_code for _ in range(4)] == [200, 503, 200, 503]


def test_scripted_answers_come_in_order_then_the_echo_again(exact: SimulatedLlm) -> None:
    exact.control(answers=[{"content": "짧아", "finish_reason": "length"}, {"content": None}])
    answers = [complete(exact, FEEDBACK) for _ in range(3)]

    finished = [a.json()["choices"][0]["finish_reason"] for a in answers]
    assert [content_of(a) for a in answers[:2]] == ["짧아", None]
    assert finished == ["length", "stop", "stop"]
    assert "아침 산책" in str(content_of(answers[2]))


def test_a_dripped_answer_is_recorded_with_how_long_it_stayed_open(exact: SimulatedLlm) -> None:
    exact.control(drip_s=0.2)
    url = f"{exact.url}/v1/chat/completions"
    with httpx.stream("POST", url, json=FEEDBACK) as answer:
        assert answer.status_code == 200
        next(answer.iter_raw())  # one byte, then hang up

    until(lambda: "open_s" in exact.requests()[-1], "the hang-up")
    [recorded] = exact.requests()
    assert recorded["messages"] == FEEDBACK["messages"]
    assert recorded["open_s"] < 5  # not the minutes the whole answer would drip


def test_reset_brings_back_the_start_faults_and_forgets_the_requests(exact: SimulatedLlm) -> None:
    exact.control(latency_s=2.0, refuse=True)
    complete(exact, FEEDBACK)

    exact.reset()

    counted = exact.stats()
    assert (counted["requests"], counted["failures"]) == (0, 0)
    assert (counted["faults"]["latency_s"], counted["faults"]["refuse"]) == (0.0, False)
    assert exact.requests() == []


def test_stop_and_start_go_to_the_control_port_only(exact: SimulatedLlm) -> None:
    # The answer to a stop sent on the API port would have to leave through the port it closes.
    refused = httpx.post(f"{exact.url}/sim/control", json={"action": "stop"})

    assert refused.status_code == 409
    assert complete(exact, FEEDBACK).status_code == 200
