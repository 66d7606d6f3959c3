"""The real-engine burst's pure parts: the simulator's fit from measured step times, the burst's
figures from vLLM's metrics text and the workers', the stored fit the simulator loads, and the
section's place on the command line and in the report."""

import json
import random
from pathlib import Path
from typing import Any

import pytest
from devstack.fakes.llm import Calibration, Fitted

from bench import calibrate, engine_burst
from bench.__main__ import NAMED_ONLY, parser
from bench.engine_metrics import EngineReading, engine_reading, worker_reading

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="gemma-3-270m"} 16.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="gemma-3-270m"} 5.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="gemma-3-270m"} 5000.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="gemma-3-270m"} 30.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="gemma-3-270m"} 10.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="gemma-3-270m"} 0.0
# HELP vllm:request_prompt_tokens Number of prefill tokens processed.
# TYPE vllm:request_prompt_tokens histogram
vllm:request_prompt_tokens_sum{engine="0",model_name="gemma-3-270m"} 18000.0
vllm:request_prompt_tokens_bucket{engine="0",le="+Inf",model_name="gemma-3-270m"} 40.0
vllm:request_prompt_tokens_count{engine="0",model_name="gemma-3-270m"} 40.0
# HELP vllm:request_generation_tokens Number of generation tokens processed.
# TYPE vllm:request_generation_tokens histogram
vllm:request_generation_tokens_sum{engine="0",model_name="gemma-3-270m"} 4800.0
vllm:request_generation_tokens_bucket{engine="0",le="+Inf",model_name="gemma-3-270m"} 40.0
vllm:request_generation_tokens_count{engine="0",model_name="gemma-3-270m"} 40.0
"""
"""vLLM 0.32's exposition, trimmed to the series the burst reads (names and labels as served)."""


def test_the_fit_recovers_a_linear_step_law_and_says_how_far_each_batch_is_from_it() -> None:
    law = Calibration(step_base_s=0.040, step_per_seq_s=0.005, prefill_per_token_s=0.0)
    steps = {n: law.step_seconds(n, 0) for n in (1, 2, 4, 8, 16)}

    fitted = Calibration.fitted(steps, prefill_per_token_s=0.0002, max_num_seqs=16)

    assert fitted.step_base_s == pytest.approx(0.040)
    assert fitted.step_per_seq_s == pytest.approx(0.005)
    assert (fitted.max_num_seqs, fitted.prefill_per_token_s) == (16, 0.0002)
    bent = measured({**steps, 16: steps[16] * 1.5})  # a batch the line cannot reach
    assert max(map(abs, bent.residuals().values())) > 0.1
    assert all(abs(r) < 1e-9 for r in measured(steps).residuals().values())


def measured(steps: dict[int, float], lengths: tuple[int, ...] = (100,)) -> calibrate.Measured:
    return calibrate.Measured(
        max_num_seqs=16,
        step_seconds=steps,
        prefill_per_token_s=0.001,
        prompt_tokens=300,
        prompt_characters=450,
        plateau=calibrate.Plateau(
            decode_tokens_per_s=180.0, prefill_per_token_s=0.001, prefill_in_batch_per_token_s=0.002
        ),
        output_lengths=list(lengths),
        characters_per_token=2.5,
    )


def test_the_simulator_pays_prefill_as_a_running_batch_does_per_character() -> None:
    # In a running batch 300 engine tokens cost 0.6 s; the simulator sees 450 characters.
    law = measured({1: 0.05, 16: 0.09}).law()

    assert law.prefill_per_token_s == pytest.approx(0.6 / 450)


def test_prefill_in_a_running_batch_is_the_plateaus_time_beyond_its_decode_steps() -> None:
    # 1,600 tokens at a batch of 16 are 100 steps of 0.5 s: 50 s; the window took 80 s, so
    # its 10,000 prompt tokens cost the batch 30 s, 3 ms each where alone they took 1 ms.
    window = calibrate.Window(seconds=80.0, output_tokens=1_600, prompt_tokens=10_000)

    found = calibrate.Plateau.from_window(
        window, prefill_per_token_s=0.001, full_batch_step_s=0.5, max_num_seqs=16
    )

    assert found.prefill_in_batch_per_token_s == pytest.approx(0.003)
    assert found.decode_tokens_per_s == pytest.approx(1_600 / (80 - 10))
    # A window faster than the sweep's steps (noise) leaves prefill at its own cost, not below.
    quick = calibrate.Window(seconds=45.0, output_tokens=1_600, prompt_tokens=10_000)
    assert calibrate.Plateau.from_window(quick, 0.001, 0.5, 16).prefill_in_batch_per_token_s == (
        0.001
    )


def test_the_stored_fit_gives_the_simulator_the_law_and_the_measured_lengths(
    tmp_path: Path,
) -> None:
    fit = measured({1: 0.05, 2: 0.052, 16: 0.09}, lengths=(12, 128, 128, 77))
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(fit.stored()))

    loaded = Fitted.load(path, max_num_seqs=16)

    assert loaded.calibration == fit.law()
    assert loaded.characters_per_token == 2.5
    rng = random.Random(0)
    assert {loaded.lengths.draw(rng) for _ in range(200)} == {12, 77, 128}


def test_the_ideal_runs_every_output_token_at_the_plateau_and_adds_the_prefill() -> None:
    plateau = calibrate.Plateau(
        decode_tokens_per_s=180.0, prefill_per_token_s=0.001, prefill_in_batch_per_token_s=0.002
    )

    assert plateau.ideal_seconds(18_000, 30_000) == pytest.approx(100 + 30)
    assert plateau.ideal_seconds(18_000, 30_000, replicas=2) == pytest.approx(65)


def test_the_sweep_covers_every_power_of_two_and_the_full_batch() -> None:
    assert calibrate.batch_sizes(16) == [1, 2, 4, 8, 16]
    assert calibrate.batch_sizes(12) == [1, 2, 4, 8, 12]
    assert calibrate.batch_sizes(1) == [1]


def test_vllms_metrics_give_the_batch_the_queue_and_the_finished_requests_tokens() -> None:
    reading = engine_reading(VLLM_METRICS)

    assert reading == EngineReading(
        running=16,
        waiting=5,
        generation_tokens=5000,
        completed=40,
        completed_prompt_tokens=18_000,
        completed_output_tokens=4800,
    )
    assert reading.wasted_tokens == 200  # generated for requests that never finished


def test_two_replicas_and_two_readings_add_and_subtract_field_by_field() -> None:
    one = engine_reading(VLLM_METRICS)
    later = EngineReading(0, 0, 6000, 50, 22_000, 5800)

    assert (one + one).running == 32
    assert later - one == EngineReading(-16, -5, 1000, 10, 4000, 1000)


def test_the_workers_metrics_give_their_llm_attempts_and_timeouts() -> None:
    text = """\
# TYPE feedback_worker_llm_attempts_total counter
feedback_worker_llm_attempts_total{outcome="answered"} 310.0
feedback_worker_llm_attempts_total{outcome="timed_out"} 12.0
feedback_worker_llm_attempts_total{outcome="failed"} 1.0
"""
    attempts = worker_reading(text)

    assert (attempts.answered, attempts.timed_out, attempts.failed) == (310, 12, 1)
    assert attempts.attempts == 323


def run(gate: bool, drain_s: float, fill: float) -> dict[str, Any]:
    return {
        "replicas": 1,
        "workers": 1,
        "gate": gate,
        "restart": False,
        "measured": "abc1234 2026-12-07",
        "requests": 300,
        "delivered": 300,
        "complete": True,
        "drain_s": drain_s,
        "ideal_s": 200.0,
        "drain_ratio": drain_s / 200,
        "batch_fill": fill,
        "waiting_p50": 1.0,
        "waiting_max": 9,
        "client_timeouts": 0,
        "wasted_ratio": 0.0,
        "extra_llm_calls": 0,
        "dlq": 0,
        "latency_p50_s": 100.0,
        "latency_p99_s": 200.0,
    }


def test_the_prediction_error_is_the_simulators_figure_against_the_engines() -> None:
    real, sim = run(True, 200.0, 0.95), run(True, 214.0, 0.76)
    error = engine_burst.prediction(engine_burst.BurstRun(**real), engine_burst.BurstRun(**sim))

    assert (error.drain_error, error.fill_error) == (0.07, -0.2)


def test_the_table_puts_the_engine_the_baseline_and_the_prediction_side_by_side() -> None:
    fit = measured({1: 0.05, 16: 0.09}).stored()
    section = {
        "requests": 300,
        "workers": 1,
        "replicas": 1,
        "max_num_seqs": 16,
        "llm_max_tokens": 128,
        "client_timeout_s": 40.0,
        "worker_concurrency": 32,
        "sqs": "moto",
        "engine_rss_gib": 5.6,
        "calibration": fit,
        "runs": [run(True, 210.0, 0.95), run(False, 230.0, 0.97)],
        "predicted": [run(True, 214.0, 0.76), run(False, 220.0, 0.97)],
        "errors": [
            {"gate": True, "drain_error": 0.019, "fill_error": -0.2},
            {"gate": False, "drain_error": -0.0435, "fill_error": 0.0},
        ],
        "seconds": {"vllm_start": 60.0},
    }

    text = engine_burst.table(section)

    assert "| vLLM 0.32 CPU | on | 300/300 | 210 | 200 | 1.05 | 0.95 |" in text
    assert "| simulator (fit) | off (baseline) | 300/300 | 220 |" in text
    assert "| on | +1.9 % | -20.0 % |" in text
    assert "| off | -4.3 % | +0.0 % |" in text


def test_the_engine_burst_runs_only_when_named_with_its_own_sizes() -> None:
    args = parser().parse_args(
        [
            *("engine_burst", "--engine-requests", "40", "--engine-replicas", "2"),
            *("--engine-max-num-seqs", "4", "--engine-max-tokens", "64"),
        ]
    )

    assert "engine_burst" in NAMED_ONLY
    assert (args.sections, args.engine_requests, args.engine_replicas) == (
        ["engine_burst"],
        40,
        2,
    )
    assert (args.engine_max_num_seqs, args.engine_max_tokens) == (4, 64)
    assert parser().parse_args([]).engine_workers == engine_burst.WORKERS


def test_the_workers_timeout_is_three_and_a_half_calls_at_the_measured_plateau() -> None:
    # A CPU that batches (180 tokens/s at 16): a call of 128 tokens takes 11.4 s, so 40 s; one
    # that does not (12.5 tokens/s at 4, 64 tokens) gives its calls 72 s, not a timeout for all.
    batching, not_batching = (
        calibrate.Plateau(180.0, 0.0, 0.0),
        calibrate.Plateau(12.5, 0.0, 0.0),
    )
    options = engine_burst.EngineBurstOptions(max_num_seqs=16, max_tokens=128)
    smaller = engine_burst.EngineBurstOptions(max_num_seqs=4, max_tokens=64)

    assert options.client_timeout_s(batching) == 40
    assert smaller.client_timeout_s(not_batching) == 72
    assert (options.worker_concurrency, smaller.worker_concurrency) == (32, 8)


def test_requests_vllm_aborted_are_not_completions() -> None:
    text = (
        "# TYPE vllm:request_success_total counter\n"
        'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 2\n'
        'vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 1\n'
        'vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 5\n'
    )
    assert engine_reading(text).completed == 3
