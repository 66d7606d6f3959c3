"""The fleet simulation's mechanics (bench/fleet), each on a small scenario with a known answer.

The chart is rendered once with its defaults (bench/fleet/chart.py); nothing here times the
machine: every figure is simulated time.
"""

import math
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import simpy
import yaml
from devstack.fakes.llm.engine import Calibration, OutputLengths

from bench.__main__ import NAMED_ONLY, parser
from bench.added_replica import REPLICAS
from bench.fleet import prewarm_sets
from bench.fleet.autoscaling import Hpa, Keda
from bench.fleet.chart import NODE_POOL, ChartFigures, consolidate_after_s, figures, render
from bench.fleet.model import WEEK_BOUNDARY, Balancing, Delays, Fleet
from bench.fleet.scenarios import Scenario, run
from bench.fleet.validation import (
    AT_ONCE,
    BurstConfig,
    added_replica,
    added_replica_table,
    real_runs,
    simulate,
)

VALUES = Path(__file__).resolve().parents[2] / "charts" / "feedback-platform" / "values.yaml"


@pytest.fixture(scope="module")
def chart() -> ChartFigures:
    return figures(render({}))


def fleet_with(
    chart: ChartFigures, replicas: int, balancing: Balancing = Balancing.CONNECTION
) -> Fleet:
    """A fleet with fixed replicas and the pods the chart's cap allows one replica (what keeps
    one batch full), no autoscaler."""
    assert chart.pods_per_llm_replica is not None
    calibration = replace(Calibration.published(), max_num_seqs=chart.max_num_seqs)
    fleet = Fleet(chart, calibration, AT_ONCE, balancing)
    fleet.vllm.scale_to(replicas)
    fleet.workers.scale_to(chart.pods_per_llm_replica)
    return fleet


def test_the_chart_is_read_as_helm_renders_it(chart: ChartFigures) -> None:
    values = yaml.safe_load(VALUES.read_text())
    worker, vllm = values["worker"], values["vllm"]
    assert chart.worker_scaling.polling_s == worker["autoscaling"]["pollingInterval"]
    assert (
        chart.worker_scaling.scale_down.stabilization_s
        == (worker["autoscaling"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"])
    )
    assert chart.vllm_scaling.cooldown_s == vllm["autoscaling"]["cooldownPeriod"]
    assert chart.vllm_scaling.idle_replicas == vllm["autoscaling"]["idleReplicas"]
    assert chart.pods_per_llm_replica == -(-vllm["maxNumSeqs"] // worker["concurrency"])
    assert chart.worker.concurrency == worker["concurrency"]
    assert chart.max_num_seqs == vllm["maxNumSeqs"]


def test_from_an_empty_pool_the_first_delivery_comes_within_30_s_of_the_cold_start(
    chart: ChartFigures,
) -> None:
    delays = Delays()
    figures_, samples = run(
        Scenario("cold", 300), delays, Calibration.published(), OutputLengths(), gpu_price=1.0
    )
    cold_start = (
        delays.node_provision_s + delays.image_pull_s + delays.vllm_start_s + delays.weight_load_s
    )
    assert figures_.delivered == 300
    # The chart's worker formula counts the replica vLLM's Deployment asks for, so its pods
    # start during its cold start and wait in their start-up check: neither KEDA's next poll
    # nor a pod's start come after vLLM is ready (issue 23's target: cold start + 30 s; + 33 s
    # when the pods waited for a Ready replica).
    cold = [s for s in samples if s.vllm_ready == 0 and s.delivered == 0 and s.time_s >= 60]
    assert cold[-1].time_s >= cold_start
    assert cold[-1].worker_pods == chart.pods_per_llm_replica  # the replica's pods, waiting
    assert cold_start < figures_.first_delivery_s <= cold_start + 30


def test_the_node_pool_s_consolidate_after_is_what_an_empty_node_is_paid(tmp_path: Path) -> None:
    assert Delays().node_release_s == consolidate_after_s(NODE_POOL) == 30
    for duration, seconds in (("1m30s", 90), ("10m", 600), ("1h", 3600)):
        documents = list(yaml.safe_load_all(NODE_POOL.read_text()))
        documents[0]["spec"]["disruption"]["consolidateAfter"] = duration
        mine = tmp_path / f"{duration}.yaml"
        mine.write_text(yaml.safe_dump_all(documents))
        assert consolidate_after_s(mine) == seconds
    documents[0]["spec"]["disruption"]["consolidateAfter"] = "Never"
    mine.write_text(yaml.safe_dump_all(documents))
    with pytest.raises(ValueError, match="no duration to price"):
        consolidate_after_s(mine)


def test_a_prewarm_window_is_open_from_its_start_to_its_end_across_midnight() -> None:
    # KEDA's rule, as the chart renders the window: Sunday 23:54 to Monday 00:10 in Seoul.
    (window,) = figures(render(dict(prewarm_sets(replicas=1)))).vllm_scaling.windows
    assert window.replicas == 1
    for minutes, replicas in ((-7, 0), (-5, 1), (0, 1), (9, 1), (11, 0), (7 * 24 * 60 - 5, 1)):
        assert window.replicas_at(WEEK_BOUNDARY + timedelta(minutes=minutes)) == replicas
    assert window.opened_before(WEEK_BOUNDARY) == WEEK_BOUNDARY - timedelta(minutes=6)
    assert window.opened_before(WEEK_BOUNDARY + timedelta(minutes=11)) is None


def test_pre_warmed_the_pool_is_ready_when_the_burst_comes_and_paid_from_the_window() -> None:
    delays = Delays()
    cold, _ = run(
        Scenario("cold", 300), delays, Calibration.published(), OutputLengths(), gpu_price=1.0
    )
    warm, samples = run(
        Scenario("warm", 300, sets=prewarm_sets(replicas=1)),
        delays,
        Calibration.published(),
        OutputLengths(),
        gpu_price=1.0,
    )
    assert warm.delivered == 300
    # Ready at the boundary: one worker poll, its start and one generation, no cold start.
    assert next(s for s in samples if s.time_s >= 0).vllm_ready == 1
    assert warm.first_delivery_s < 60 < delays.node_provision_s < cold.first_delivery_s
    # The lead is paid: the replica's node from 6 minutes (and a poll) before the boundary.
    assert warm.gpu_hours_paid > cold.gpu_hours_paid


def test_the_scale_down_stabilization_holds_replicas_for_the_window(
    chart: ChartFigures,
) -> None:
    scaling = chart.worker_scaling
    hpa = Hpa(scaling)
    target = scaling.triggers[0].target
    assert hpa.desired(0, 8, {"formula": 8 * target}) == 8
    window = scaling.scale_down.stabilization_s
    polls = [p * scaling.polling_s for p in range(1, int(window // scaling.polling_s))]
    assert all(hpa.desired(t, 8, {"formula": 0}) == 8 for t in polls)
    # Past the window the policy (50 % a minute) lets half the pods go at once.
    assert hpa.desired(window + scaling.polling_s, 8, {"formula": 0}) == 4


def test_scale_up_adds_at_most_the_policy_per_period(chart: ChartFigures) -> None:
    scaling = chart.worker_scaling
    hpa = Hpa(scaling)
    busy = {"formula": 20 * scaling.triggers[0].target}
    first = hpa.desired(0, 1, busy)
    hpa.record(0, first - 1)
    (policy,) = scaling.scale_up.policies
    assert first == 1 + policy.value
    assert hpa.desired(policy.period_s / 2, first, busy) == first
    assert hpa.desired(policy.period_s + 1, first, busy) == first + policy.value


class Replicas:
    """A Deployment that only counts."""

    def __init__(self) -> None:
        self.replicas = 0

    def scale_to(self, replicas: int) -> None:
        self.replicas = replicas


def test_keda_wakes_the_gpu_pool_on_a_message_and_empties_it_a_cooldown_after_the_last(
    chart: ChartFigures,
) -> None:
    scaling = chart.vllm_scaling
    env = simpy.Environment()
    pool = Replicas()
    metrics = {"queue": 0.0, "waiting": 0.0}
    Keda(env, scaling, pool, lambda: metrics)
    env.run(until=5 * scaling.polling_s)
    assert pool.replicas == 0

    metrics["queue"] = 1.0
    env.run(until=6 * scaling.polling_s + 1)
    assert pool.replicas == max(1, scaling.min_replicas)

    last_active = 10 * scaling.polling_s
    env.run(until=last_active + 1)
    metrics["queue"] = 0.0
    env.run(until=last_active + scaling.cooldown_s - 1)
    assert pool.replicas == 1
    env.run(until=last_active + scaling.cooldown_s + scaling.polling_s + 1)
    assert pool.replicas == scaling.idle_replicas == 0


def test_a_replica_lost_mid_burst_loses_no_request() -> None:
    calibration = Calibration.published()
    figures_, samples = run(
        Scenario("lost", 6000, lose_replica_at_s=420),
        Delays(),
        calibration,
        OutputLengths(),
        gpu_price=1.0,
    )
    assert any(s.vllm_ready == 0 and s.delivered < 6000 for s in samples[30:])
    assert figures_.wasted_tokens > 0  # it was running sequences when it went
    assert figures_.delivered == 6000
    assert figures_.received_again == 0  # held by the pods for the gate, not received again


def test_a_worker_pod_lost_mid_burst_loses_no_request_its_messages_come_back_once(
    chart: ChartFigures,
) -> None:
    lost_at = 420.0
    figures_, _ = run(
        Scenario("worker lost", 6000, lose_worker_at_s=lost_at),
        Delays(),
        Calibration.published(),
        OutputLengths(),
        gpu_price=1.0,
    )
    assert figures_.delivered == 6000
    # What the pod held (at most its concurrency) came back and was received a second time.
    assert 0 < figures_.received_again <= chart.worker.concurrency


def test_a_replica_added_mid_burst_gets_work_once_connections_age_never_while_pinned(
    chart: ChartFigures,
) -> None:
    # kube-proxy places connections; busy ones never idle out, so without an age (the worker
    # before LLM_CONNECTION_MAX_AGE_SECONDS) the second replica got none of the calls.
    pinned = replace(chart, worker=replace(chart.worker, connection_max_age_s=math.inf))
    cases = {
        "pinned": (pinned, Balancing.CONNECTION),
        "aged": (chart, Balancing.CONNECTION),
        "per request": (chart, Balancing.REQUEST),
    }
    generated = {}
    for name, (rendered, balancing) in cases.items():
        fleet = fleet_with(rendered, replicas=1, balancing=balancing)
        fleet.accept(30_000)
        fleet.env.run(until=300)
        fleet.vllm.scale_to(2)
        fleet.env.run(until=900)
        old, new = fleet.vllm.live
        generated[name] = new.engine.counters.generation_tokens / (
            old.engine.counters.generation_tokens or 1
        )
    assert generated["pinned"] < 0.05
    assert generated["aged"] > 0.5
    assert generated["per request"] > 0.5


def test_one_replica_at_its_plateau_drains_n_requests_in_the_ideal_time(
    chart: ChartFigures,
) -> None:
    requests = 20_000
    fleet = fleet_with(chart, replicas=1)
    fleet.accept(requests)
    fleet.env.run(until=10 * 3600)
    (replica,) = fleet.vllm.live
    counters = replica.engine.counters
    ideal = fleet.calibration.ideal_seconds(
        counters.useful_output_tokens, counters.useful_prompt_tokens
    )
    last = max(m.delivered_s for m in fleet.messages)
    assert fleet.delivered == requests
    assert ideal <= last <= 1.03 * ideal


@pytest.mark.parametrize(("replicas", "requests", "restart"), [(2, 5_000, False), (1, 3_000, True)])
def test_configured_as_the_burst_bench_one_pod_keeps_the_replicas_at_their_ideal(
    chart: ChartFigures, replicas: int, requests: int, restart: bool
) -> None:
    """bench/fleet/validation.py's mechanics, small: one pod with two batches' concurrency
    fills both replicas (per-connection balancing), and a restart costs its outage and load,
    not more; the ideal counts both (bench/burst.py `ideal_seconds`)."""
    simulated = simulate(BurstConfig(replicas, 1, restart, requests, 256, 512), chart)
    assert simulated.ideal_s <= simulated.drain_s <= 1.05 * simulated.ideal_s
    assert simulated.batch_fill >= 0.9


def test_the_validation_compares_every_gate_on_burst_of_the_latest_results() -> None:
    configs = [config for config, _ in real_runs()]
    assert any(config.restart for config in configs)
    assert {(c.replicas, c.workers) for c in configs if not c.restart} >= {(2, 1), (2, 8)}


def test_the_model_of_section_8_strands_the_added_replica_only_while_connections_are_pinned(
    chart: ChartFigures,
) -> None:
    # Section 8's configuration (bench/added_replica.py) on the model, as the validation runs
    # it beside the real processes' figures in latest.json.
    pinned = added_replica("pinned", math.inf, chart)
    aged = added_replica("aged 10 s", 10.0, chart)
    assert pinned.seconds_to_full is None
    assert pinned.added_fill < 0.1 < 0.7 < aged.added_fill
    assert aged.drain_s < pinned.drain_s
    assert "| aged 10 s |" in added_replica_table()


def test_the_worker_s_own_balancing_fills_an_added_replica_within_a_poll_or_two(
    chart: ChartFigures,
) -> None:
    # LLM_REPLICAS on the model: every poll reads both replicas and the calls go where there is
    # room, so the added replica runs 90 % of its batch within two polls (issue 23's target),
    # where connections aged every 10 s took about 20 s.
    aged = added_replica("aged 10 s", 10.0, chart)
    own = added_replica(REPLICAS, 10.0, chart, Balancing.REPLICA)
    assert own.seconds_to_full is not None
    assert aged.seconds_to_full is not None
    assert own.seconds_to_full <= 2 * chart.worker.gate_poll_s < aged.seconds_to_full
    assert own.added_fill > aged.added_fill


def test_the_fleet_runs_only_when_named_with_your_own_figures() -> None:
    args = parser().parse_args(
        [
            *("fleet", "--fleet-requests", "20000,200000", "--fleet-gpu-price", "2.5"),
            *("--fleet-set", "vllm.autoscaling.maxReplicas=8", "--fleet-delays", "d.json"),
        ]
    )

    assert "fleet" in NAMED_ONLY
    assert (args.fleet_requests, args.fleet_gpu_price) == ((20_000, 200_000), 2.5)
    assert args.fleet_set == [("vllm.autoscaling.maxReplicas", "8")]
    assert args.fleet_delays == Path("d.json")
