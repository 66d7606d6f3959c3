"""The vLLM simulator schedules like vLLM: proven on its own counters and virtual clock.

Engine tests drive the scheduler step by step (no real time at all); HTTP tests talk to the
server over loopback, with a large time scale so that virtual minutes pass in real seconds.
"""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from devstack.fakes.vllm_sim import Calibration, Engine, Outcome, SimulatorThread

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
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(Calibration.published(max_num_seqs=4), time_scale=100) as server:
        yield server


def stats(sim: SimulatorThread) -> dict[str, Any]:
    return httpx.get(f"{sim.control_url}/sim/stats").json()


def control(sim: SimulatorThread, **change: Any) -> None:
    httpx.post(f"{sim.control_url}/sim/control", json=change).raise_for_status()


def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.02)


def health_up(sim: SimulatorThread) -> bool:
    try:
        return httpx.get(f"{sim.url}/health").status_code == 200
    except httpx.ConnectError:
        return False


def complete(
    sim: SimulatorThread, body: dict[str, Any] = CHAT, timeout: float = 30
) -> httpx.Response:
    return httpx.post(f"{sim.url}/v1/chat/completions", json=body, timeout=timeout)


def test_concurrent_calls_share_steps_and_the_rest_wait(sim: SimulatorThread) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: complete(sim), range(8)))

    assert [a.status_code for a in answers] == [200] * 8
    counted = stats(sim)
    tokens = sum(a.json()["usage"]["completion_tokens"] for a in answers)
    assert counted["generation_tokens"] == tokens
    # Two waves of four in one batch each: about a quarter of the steps one at a time would take.
    assert counted["steps"] < tokens / 3
    assert counted["success"]["stop"] == 8


def test_answer_is_openai_shaped_and_cut_at_max_tokens(sim: SimulatorThread) -> None:
    answer = complete(sim, {**CHAT, "max_tokens": 30}).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 30
    assert len(answer["choices"][0]["message"]["content"]) == 30
    assert answer["usage"]["prompt_tokens"] == 450


def test_a_fitted_simulator_writes_as_many_characters_a_token_as_its_engine() -> None:
    # The worker's content checks count characters: a CPU engine's 36-token drafts pass a
    # 40-character minimum that one character a token would fail.
    fitted = SimulatorThread(
        Calibration.published(max_num_seqs=4), time_scale=100, characters_per_token=2.5
    )
    with fitted:
        answer = complete(fitted, {**CHAT, "max_tokens": 36}).json()

    assert answer["usage"]["completion_tokens"] == 36
    assert len(answer["choices"][0]["message"]["content"]) == 90


def test_disconnect_aborts_and_counts_its_tokens_as_wasted() -> None:
    with SimulatorThread(PUBLISHED, time_scale=1) as slow:  # 100 tokens/s real: ~4 s to finish
        with pytest.raises(httpx.ReadTimeout):
            complete(slow, timeout=0.5)
        until(lambda: stats(slow)["aborted"] == 1, "the abort")
        counted = stats(slow)
    assert counted["running"] == 0
    assert counted["disconnected"] == 1
    assert counted["wasted_tokens"] > 0
    assert counted["wasted_tokens"] == counted["generation_tokens"]
    assert counted["success"] == {"stop": 0, "length": 0}


def test_fail_answers_the_status_until_healed(sim: SimulatorThread) -> None:
    control(sim, action="fail", status=503)
    assert complete(sim).status_code == 503
    control(sim, action="heal")
    assert complete(sim).status_code == 200
    assert stats(sim)["rejected"] == 1


def test_stop_refuses_connections_and_start_loads_the_model_first(sim: SimulatorThread) -> None:
    control(sim, action="stop")
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
    assert stats(sim)["virtual_s"] >= started["loading_until_s"]
    assert complete(sim).status_code == 200


def test_stop_aborts_what_was_running_as_waste() -> None:
    with SimulatorThread(PUBLISHED, time_scale=1) as slow:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(complete, slow)
            until(lambda: stats(slow)["generation_tokens"] > 0, "the first token")
            control(slow, action="stop")
            assert pending.result().status_code == 503
        counted = stats(slow)
    assert (counted["aborted"], counted["disconnected"]) == (1, 0)
    assert counted["wasted_tokens"] == counted["generation_tokens"] > 0


def test_metrics_carry_vllm_names_and_counts(sim: SimulatorThread) -> None:
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
    with SimulatorThread(PUBLISHED, time_scale=100, api_key="k-123") as guarded:
        assert complete(guarded).status_code == 401
        assert httpx.get(f"{guarded.url}/v1/models").status_code == 401
        assert httpx.get(f"{guarded.url}/health").status_code == 200
        models = httpx.get(f"{guarded.url}/v1/models", headers={"authorization": "Bearer k-123"})
        assert models.json()["data"][0]["id"] == "sim-7b"
