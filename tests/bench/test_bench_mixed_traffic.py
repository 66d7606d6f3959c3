"""Section 9, mixed traffic (bench/mixed_traffic.py): a tiny burst beside the interactive load
runs end to end in real processes (simulator, moto, workers, receiver) and gives every figure
of its table; a row is a scheduling policy and the workers' environment. No timing is
asserted: on a test machine the figures mean nothing, only that they are there."""

import math
import time
from dataclasses import asdict

import pytest

from bench import mixed_traffic
from bench.__main__ import NAMED_ONLY, parser
from bench.mixed_traffic import (
    Interactive,
    InteractiveLoad,
    Latencies,
    MixedOptions,
    read_event,
)
from tests.support.fakes import simulated_llm

TINY = MixedOptions(
    requests=40, time_scale=5.0, workers=1, interactive_per_s=4.0, idle_s=10.0, sqs="moto"
)
"""40 feedback requests (seconds at time scale 5), 20 interactive requests a real second."""


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_tiny_mixed_burst_runs_end_to_end_and_gives_every_figure_of_each_row() -> None:
    figures = mixed_traffic.run(TINY, "test")

    assert [run.row for run in figures.runs] == [row.name for row in mixed_traffic.ROWS]
    assert [run.scheduling_policy for run in figures.runs] == ["fcfs", "priority"]
    assert [run.worker_env for run in figures.runs] == [{}, {"LLM_PRIORITY": "10"}]
    for run in figures.runs:
        assert run.delivered == TINY.requests
        assert run.idle.requests > 0
        assert run.burst.requests > 0
        assert (run.idle.failed, run.burst.failed) == (0, 0)
        assert run.burst.completion_tokens == run.burst.requests * 64
        ratios = (run.ttft_p50_ratio, run.ttft_p99_ratio, run.itl_p50_ratio, run.itl_p99_ratio)
        assert all(math.isfinite(r) and r > 0 for r in ratios)
        assert math.isfinite(run.drain_ratio)
        assert run.interactive_gpu_s > 0
    table = mixed_traffic.table(asdict(figures))
    assert all(f"| {row.name} |" in table for row in mixed_traffic.ROWS)


def test_the_client_times_content_chunks_not_the_role_and_reads_usage_and_done() -> None:
    seen = Interactive()
    role = '{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}'
    read_event(seen, role, 0.1)
    read_event(seen, '{"choices":[{"index":0,"delta":{"content":"네"},"finish_reason":null}]}', 0.2)
    last = '{"choices":[{"index":0,"delta":{"content":"요"},"finish_reason":"length"}]}'
    read_event(seen, last, 0.5)
    read_event(seen, '{"choices":[],"usage":{"prompt_tokens":30,"completion_tokens":2}}', 0.5)
    assert seen.failed  # no [DONE] yet
    read_event(seen, "[DONE]", 0.5)

    assert not seen.failed
    assert seen.first_token_s == 0.2
    assert seen.inter_token_s == pytest.approx(0.3)
    assert (seen.prompt_tokens, seen.completion_tokens) == (30, 2)


def test_an_error_inside_the_stream_fails_the_request() -> None:
    seen = Interactive()
    read_event(seen, '{"error":{"message":"engine stopped","code":503}}', 0.1)
    read_event(seen, "[DONE]", 0.1)

    assert seen.failed


def test_a_refused_chat_request_counts_as_failed_and_the_load_goes_on() -> None:
    # The simulator's exact-latency mode refuses streams (400): every request is a failure
    # in the figures, none stops the load.
    with simulated_llm(latency_s=0.0) as exact:
        load = InteractiveLoad(exact.url, "sim-7b", per_real_s=20).start()
        time.sleep(0.5)
        seen = load.stop()

    assert len(seen) > 1
    assert {s.error for s in seen} == {"status 400"}
    assert Latencies.of(seen, scale=1.0).failed == len(seen)


def test_the_mixed_traffic_section_runs_only_when_named_with_its_own_sizes() -> None:
    assert "mixed_traffic" in NAMED_ONLY
    sizes = ["--mixed-requests", "500", "--mixed-time-scale", "1", "--mixed-interactive-per-s", "3"]
    args = parser().parse_args(["mixed_traffic", *sizes])

    assert (args.mixed_requests, args.mixed_time_scale, args.mixed_interactive_per_s) == (
        500,
        1.0,
        3.0,
    )
