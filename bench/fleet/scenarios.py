"""Scenarios: a burst, the chart's values it runs with, and the figures it gives.

A scenario renders the chart (bench/fleet/chart.py) with its `--set` pairs, builds the fleet
(bench/fleet/model.py) with both ScaledObjects' loops (bench/fleet/autoscaling.py), puts the
burst on the queue, and runs until every request is delivered and the GPU pool is empty again
(every node removed): the GPU-hours are all the burst pays for, the tail included.
"""

import math
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

import simpy
from devstack.fakes.llm.engine import Calibration, OutputLengths

from bench.fleet.autoscaling import Keda
from bench.fleet.chart import ChartFigures, figures, render
from bench.fleet.model import WEEK_BOUNDARY, Balancing, Delays, Fleet, Sample

SAMPLE_EVERY_S = 15.0
"""The plot's and the CSV's resolution: KEDA's pollingInterval, so every scaling shows."""
HORIZON_S = 14 * 24 * 3600.0
"""A scenario that has not finished in two weeks of simulated time is reported as it stands."""


@dataclass(frozen=True)
class Scenario:
    name: str
    requests: int
    arrival_s: float = 0.0
    """0: every request accepted at the week's boundary (the clock's 0, WEEK_BOUNDARY); else
    evenly over this many seconds from it."""
    sets: tuple[tuple[str, str], ...] = ()
    """helm --set pairs beside charts/feedback-platform/ci/minimal-values.yaml."""
    lose_replica_at_s: float | None = None
    """Seconds after the week's boundary that the first vLLM replica's node is lost (None:
    never)."""
    lose_worker_at_s: float | None = None
    """Seconds after the week's boundary that the first worker pod is lost with its node."""
    balancing: Balancing | None = None
    """None: as the chart wires the worker (its own over the replicas with LLM_REPLICAS,
    kube-proxy's per connection without: `charted_balancing`)."""
    deadline_s: float = 7200.0
    """Delivered by this long after the week's boundary counts as on time."""


@dataclass(frozen=True)
class Figures:
    scenario: str
    requests: int
    delivered: int
    vllm_max_replicas: int
    gpu_hours_paid: float
    gpu_hours_ideal: float
    """The burst's work at one replica's plateau (`Calibration.ideal_seconds`)."""
    paid_over_ideal: float
    cost: float
    first_delivery_s: float
    """From the first message accepted to the first result delivered."""
    p50_s: float
    p99_s: float
    """Accepted → delivered."""
    on_time: float
    """Share delivered within `deadline_s` of the week's boundary."""
    deadline_s: float
    last_delivery_s: float
    peak_replicas: int
    peak_pods: int
    wasted_tokens: int
    """Tokens generated for calls that a lost or retired replica aborted."""
    received_again: int
    """Messages received more than once: those a lost worker pod held came back after their
    visibility timeout."""
    simulated_s: float
    wall_s: float


def charted_balancing(chart: ChartFigures) -> Balancing:
    return Balancing.REPLICA if chart.worker.routes_to_replicas else Balancing.CONNECTION


def run(
    scenario: Scenario,
    delays: Delays,
    calibration: Calibration,
    lengths: OutputLengths,
    gpu_price: float,
    seed: int = 0,
) -> tuple[Figures, list[Sample]]:
    started = time.monotonic()
    chart = figures(render(dict(scenario.sets)))
    fleet = Fleet(
        chart,
        replace(calibration, max_num_seqs=chart.max_num_seqs),
        delays,
        scenario.balancing or charted_balancing(chart),
        seed,
        lengths,
        env=simpy.Environment(initial_time=-_warm_up_s(chart)),
    )
    env = fleet.env
    Keda(env, chart.vllm_scaling, fleet.vllm, fleet.vllm_metrics)
    Keda(env, chart.worker_scaling, fleet.workers, fleet.worker_metrics)
    env.process(_arrivals(fleet, scenario))
    if scenario.lose_replica_at_s is not None:
        env.process(_lose_replica(fleet, scenario.lose_replica_at_s))
    if scenario.lose_worker_at_s is not None:
        env.process(_lose_worker(fleet, scenario.lose_worker_at_s))
    done = env.process(_sample_until_done(fleet, scenario.requests))
    env.run(until=simpy.AnyOf(env, [done, env.timeout(HORIZON_S)]))
    return _figures(fleet, scenario, gpu_price, time.monotonic() - started), fleet.samples


def _warm_up_s(chart: ChartFigures) -> float:
    """How long before the week's boundary the clock starts: from one poll before the earliest
    pre-warm window open at the boundary opened (0 without one)."""
    opened = [window.opened_before(WEEK_BOUNDARY) for window in chart.vllm_scaling.windows]
    earliest = min((at for at in opened if at is not None), default=None)
    if earliest is None:
        return 0.0
    return (WEEK_BOUNDARY - earliest).total_seconds() + chart.vllm_scaling.polling_s


def _arrivals(fleet: Fleet, scenario: Scenario) -> Generator[simpy.Event, Any, None]:
    """At once, or a share every second over `arrival_s`, from the week's boundary."""
    yield fleet.env.timeout(-fleet.env.now)
    seconds = max(1, math.ceil(scenario.arrival_s))
    for second in range(seconds):
        fleet.accept(
            scenario.requests * (second + 1) // seconds - scenario.requests * second // seconds
        )
        yield fleet.env.timeout(1.0)


def _lose_replica(fleet: Fleet, at_s: float) -> Generator[simpy.Event, Any, None]:
    yield fleet.env.timeout(at_s - fleet.env.now)
    if fleet.vllm.live:
        fleet.vllm.lose(fleet.vllm.live[0])


def _lose_worker(fleet: Fleet, at_s: float) -> Generator[simpy.Event, Any, None]:
    yield fleet.env.timeout(at_s - fleet.env.now)
    if fleet.workers.pods:
        fleet.workers.lose(fleet.workers.pods[0])


def _sample_until_done(fleet: Fleet, requests: int) -> Generator[simpy.Event, Any, None]:
    while True:
        fleet.samples.append(fleet.sample())
        pool_empty = all(node.removed_s is not None for node in fleet.vllm.nodes)
        if fleet.delivered == requests and pool_empty and not fleet.workers.replicas:
            return
        yield fleet.env.timeout(SAMPLE_EVERY_S)


def _figures(fleet: Fleet, scenario: Scenario, gpu_price: float, wall_s: float) -> Figures:
    end = fleet.env.now
    latencies = sorted(
        m.delivered_s - m.accepted_s for m in fleet.messages if not math.isnan(m.delivered_s)
    )
    delivered_at = [m.delivered_s for m in fleet.messages if not math.isnan(m.delivered_s)]
    paid_s = sum(
        (n.removed_s if n.removed_s is not None else end) - n.launched_s for n in fleet.vllm.nodes
    )
    engines = fleet.vllm.engines()
    ideal_s = fleet.calibration.ideal_seconds(
        sum(e.counters.useful_output_tokens for e in engines),
        sum(e.counters.useful_prompt_tokens for e in engines),
    )
    first_accepted = min((m.accepted_s for m in fleet.messages), default=0.0)
    return Figures(
        scenario=scenario.name,
        requests=scenario.requests,
        delivered=len(latencies),
        vllm_max_replicas=fleet.chart.vllm_scaling.max_replicas,
        gpu_hours_paid=paid_s / 3600,
        gpu_hours_ideal=ideal_s / 3600,
        paid_over_ideal=paid_s / ideal_s if ideal_s else math.nan,
        cost=paid_s / 3600 * gpu_price,
        first_delivery_s=min(delivered_at, default=math.nan) - first_accepted,
        p50_s=_quantile(latencies, 0.50),
        p99_s=_quantile(latencies, 0.99),
        on_time=sum(1 for t in delivered_at if t <= scenario.deadline_s) / scenario.requests,
        deadline_s=scenario.deadline_s,
        last_delivery_s=max(delivered_at, default=math.nan),
        peak_replicas=max(s.vllm_replicas for s in fleet.samples),
        peak_pods=max(s.worker_pods for s in fleet.samples),
        wasted_tokens=sum(e.counters.wasted_tokens for e in engines),
        received_again=sum(1 for m in fleet.messages if m.receives > 1),
        simulated_s=end,
        wall_s=wall_s,
    )


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, math.floor(q * len(ordered)))]
