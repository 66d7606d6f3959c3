"""The fleet model beside the burst bench's real processes (issue 23, item 2).

`python -m bench.fleet.validation` configures the model (bench/fleet/model.py) like each
gate-on run of section 5 in bench/results/latest.json and compares drain and batch fill:

- as bench/burst.py runs it: its replicas Ready from the first second, no autoscaler and no node
  to provision, its workers started at once (its clock starts when the first worker is ready);
  `WORKER_CONCURRENCY`, `max_num_seqs` and the request count read from latest.json, every other
  worker setting the worker's own default (bench/burst.py passes none of the gate's), the
  calibration the bench's simulators run (`bench.burst.CALIBRATION`, the published 7B/H100);
- the Service is bench/round_robin_proxy.py, a replica per new connection: the model's
  per-connection balancing, whose kept-alive connections and gate polls stay on their replica;
- the restart: once half the requests are delivered every replica stops, and is Ready again
  `OUTAGE_S + LOAD_S` later (bench/burst.py `Outage`);
- measured as bench/burst.py measures: drain is the last delivery, the ideal is
  `bench.burst.ideal_seconds` on the completed tokens, batch fill is `bench.burst.Sampler` every
  `SAMPLE_EVERY_S` on the replicas' readings (bench/engine_metrics.py's fields).
"""

import json
import math
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import simpy
from devstack.fakes.llm.engine import Engine
from feedback_worker.settings import WorkerSettings

from bench import added_replica as added
from bench.burst import (
    CALIBRATION,
    LOAD_S,
    OUTAGE_S,
    SAMPLE_EVERY_S,
    WORKER_CONCURRENCY,
    Outage,
    Sampler,
    ideal_seconds,
)
from bench.engine_metrics import EngineReading, total
from bench.fleet.chart import ChartFigures, Worker, figures, render
from bench.fleet.model import Balancing, Delays, Fleet, ReplicaState
from bench.fleet.report import RESULTS

LATEST = RESULTS / "latest.json"
TOLERANCE = 0.05
"""Issue 23's bar: the model within 5 % of the real processes on drain and batch fill."""
AT_ONCE = Delays(
    node_provision_s=0,
    image_pull_s=0,
    vllm_start_s=0,
    weight_load_s=0,
    worker_start_s=0,
    node_release_s=0,
)
"""The burst bench's replicas and workers are up when its clock starts."""


@dataclass(frozen=True)
class BurstConfig:
    """One run of the burst bench, as the model needs it."""

    replicas: int
    workers: int
    restart: bool
    requests: int
    max_num_seqs: int
    worker_concurrency: int

    @property
    def name(self) -> str:
        workers = f"{self.workers} worker{'s' if self.workers > 1 else ''}"
        return f"{self.replicas} vLLM x {workers}{', restart' if self.restart else ''}"


@dataclass(frozen=True)
class Simulated:
    drain_s: float
    ideal_s: float
    batch_fill: float


@dataclass(frozen=True)
class Row:
    scenario: str
    real: Simulated
    """The burst bench's own figures, from latest.json."""
    model: Simulated

    @property
    def drain_error(self) -> float:
        return self.model.drain_s / self.real.drain_s - 1

    @property
    def fill_error(self) -> float:
        return self.model.batch_fill / self.real.batch_fill - 1

    @property
    def within(self) -> bool:
        return max(abs(self.drain_error), abs(self.fill_error)) <= TOLERANCE


def worker(concurrency: int) -> Worker:
    """The bench's worker: its WORKER_CONCURRENCY, the worker's defaults for the rest (the
    capacity poll, one GPU second, is the default's 1 s at the bench's time scale 1), but for
    the connections' age: section 5 ran before they had one (kept alive while busy)."""
    defaults = WorkerSettings.model_fields
    return Worker(
        concurrency=concurrency,
        gate_poll_s=float(defaults["llm_capacity_poll_seconds"].default),
        target_waiting=int(defaults["llm_target_waiting"].default),
        start_limit=int(defaults["llm_start_limit"].default),
        max_tokens=int(defaults["llm_max_tokens"].default),
        visibility_timeout_s=float(defaults["visibility_timeout_seconds"].default),
        connection_max_age_s=math.inf,
        routes_to_replicas=False,
    )


def engine_reading(engine: Engine) -> EngineReading:
    """What the simulator's /metrics says of this engine (`_EngineCollector` in
    tools/devstack/src/devstack/fakes/llm/app.py), in the fields bench/engine_metrics.py reads."""
    counters = engine.counters
    return EngineReading(
        running=len(engine.running),
        waiting=len(engine.waiting),
        generation_tokens=counters.generation_tokens,
        completed=sum(counters.success.values()),
        completed_prompt_tokens=counters.useful_prompt_tokens,
        completed_output_tokens=counters.useful_output_tokens,
    )


def fleet_for(config: BurstConfig, chart: ChartFigures) -> Fleet:
    """The model as the bench runs: fixed replicas and workers, no autoscaler (no `Keda`), the
    simulator's default output lengths."""
    bench_chart = replace(
        chart, worker=worker(config.worker_concurrency), max_num_seqs=config.max_num_seqs
    )
    calibration = replace(CALIBRATION, max_num_seqs=config.max_num_seqs)
    fleet = Fleet(bench_chart, calibration, AT_ONCE, Balancing.CONNECTION)
    fleet.vllm.scale_to(config.replicas)
    fleet.workers.scale_to(config.workers)
    return fleet


def simulate(config: BurstConfig, chart: ChartFigures) -> Simulated:
    """One burst on the model, measured as bench/burst.py measures it."""
    fleet = fleet_for(config, chart)
    sampler = Sampler(
        lambda: _reading_if_up(fleet), config.requests, config.replicas * config.max_num_seqs
    )
    fleet.accept(config.requests)
    fleet.env.run(until=fleet.env.process(_watch(fleet, config, sampler)))
    reading = total(engine_reading(e) for e in fleet.vllm.engines())
    return Simulated(
        drain_s=max(m.delivered_s for m in fleet.messages),
        ideal_s=ideal_seconds(
            fleet.calibration.ideal_seconds, reading, config.replicas, config.restart
        ),
        batch_fill=sampler.batch_fill,
    )


def _reading_if_up(fleet: Fleet) -> EngineReading | None:
    """The replicas' summed reading, or None while one is down (bench/burst.py
    `Engines.reading_if_up`)."""
    live = fleet.vllm.live
    if any(r.state is not ReplicaState.READY for r in live):
        return None
    return total(engine_reading(r.engine) for r in live)


def _watch(
    fleet: Fleet, config: BurstConfig, sampler: Sampler
) -> Generator[simpy.Event, Any, None]:
    """bench/burst.py's loop every SAMPLE_EVERY_S: sample, stop the replicas half-way (the
    restart), until every request is delivered."""
    restarted = False
    while fleet.delivered < config.requests:
        sampler.take(fleet.delivered)
        if config.restart and not restarted and Outage.due(fleet.delivered, config.requests):
            for replica in fleet.vllm.live:
                replica.restart(OUTAGE_S + LOAD_S)
            restarted = True
        yield fleet.env.timeout(SAMPLE_EVERY_S)


def real_runs(latest: Path = LATEST) -> list[tuple[BurstConfig, Simulated]]:
    """Section 5's gate-on runs: the worker the chart ships (the baselines are today's
    fixed-concurrency worker, which the model does not simulate)."""
    burst = json.loads(latest.read_text())["burst"]
    return [
        (
            BurstConfig(
                replicas=run["replicas"],
                workers=run["workers"],
                restart=run["restart"],
                requests=run["requests"],
                max_num_seqs=burst["max_num_seqs"],
                worker_concurrency=burst["worker_concurrency"],
            ),
            Simulated(run["drain_s"], run["ideal_s"], run["batch_fill"]),
        )
        for run in burst["runs"]
        if run["gate"]
    ]


def validate(latest: Path = LATEST) -> list[Row]:
    chart = figures(render({}))
    return [Row(config.name, real, simulate(config, chart)) for config, real in real_runs(latest)]


@dataclass(frozen=True)
class AddedReplicaFigures:
    """Section 8's figures (bench/added_replica.py), as the model gives them."""

    connections: str
    drain_s: float
    added_fill: float
    seconds_to_full: float | None
    added_token_share: float


def added_replica(
    connections: str,
    age_s: float,
    chart: ChartFigures,
    balancing: Balancing = Balancing.CONNECTION,
) -> AddedReplicaFigures:
    """Section 8 on the model: one replica Ready, ADDED's workers, a second replica added once
    ADDED_AT of the requests are delivered, the connections aging every `age_s`."""
    bench_worker = replace(worker(WORKER_CONCURRENCY), connection_max_age_s=age_s)
    fleet = Fleet(replace(chart, worker=bench_worker), CALIBRATION, AT_ONCE, balancing)
    fleet.vllm.scale_to(1)
    fleet.workers.scale_to(added.WORKERS)
    fleet.accept(added.REQUESTS)
    fills: list[tuple[float, float]] = []
    tokens: dict[str, float] = {}
    fleet.env.run(until=fleet.env.process(_added_watch(fleet, fills, tokens)))
    slots = CALIBRATION.max_num_seqs
    full = next((at for at, fill in fills if fill >= added.FULL * slots), None)
    return AddedReplicaFigures(
        connections=connections,
        drain_s=max(m.delivered_s for m in fleet.messages),
        added_fill=round(sum(f for _, f in fills) / len(fills) / slots, 3) if fills else 0.0,
        seconds_to_full=full,
        added_token_share=round(tokens["added"] / (tokens["both"] or 1), 3),
    )


def _added_watch(
    fleet: Fleet, fills: list[tuple[float, float]], tokens: dict[str, float]
) -> Generator[simpy.Event, Any, None]:
    """bench/added_replica.py's loop: add the replica, then sample its running batch from its
    start while more requests remain than both replicas run at once; its token share after."""
    total_requests, slots = added.REQUESTS, CALIBRATION.max_num_seqs
    while fleet.delivered < added.ADDED_AT * total_requests:
        yield fleet.env.timeout(SAMPLE_EVERY_S)
    fleet.vllm.scale_to(2)
    first, second = fleet.vllm.live
    while second.state is not ReplicaState.READY:
        yield fleet.env.timeout(SAMPLE_EVERY_S)
    ready_at = fleet.env.now
    before = first.engine.counters.generation_tokens
    while fleet.delivered < total_requests:
        if total_requests - fleet.delivered > 2 * slots:
            fills.append((fleet.env.now - ready_at, float(len(second.engine.running))))
        yield fleet.env.timeout(SAMPLE_EVERY_S)
    tokens["added"] = second.engine.counters.generation_tokens
    tokens["both"] = tokens["added"] + first.engine.counters.generation_tokens - before


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | real drain s | sim drain s | error | real ideal s | sim ideal s "
        f"| real fill | sim fill | error | within {TOLERANCE:.0%}? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.real.drain_s:.1f} | {r.model.drain_s:.1f} "
            f"| {r.drain_error:+.1%} | {r.real.ideal_s:.1f} | {r.model.ideal_s:.1f} "
            f"| {r.real.batch_fill:.3f} | {r.model.batch_fill:.3f} | {r.fill_error:+.1%} "
            f"| {'yes' if r.within else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def added_replica_table(latest: Path = LATEST) -> str:
    """Section 8's runs beside the model's (pinned connections: an age no burst reaches)."""
    chart = figures(render({}))
    lines = [
        "| connections | real drain s | sim drain s | real added fill | sim added fill "
        "| real s to 90 % | sim s to 90 % | real token share | sim token share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    default_age = chart.worker.connection_max_age_s
    for real in json.loads(latest.read_text())["added_replica"]["runs"]:
        name = real["connections"]
        if name == added.REPLICAS:
            model = added_replica(name, default_age, chart, Balancing.REPLICA)
        else:
            age_s = math.inf if name == "pinned" else float(name.split()[1])
            model = added_replica(name, age_s, chart)
        lines.append(
            f"| {real['connections']} | {real['drain_s']:.0f} | {model.drain_s:.0f} "
            f"| {real['added_fill']:.2f} | {model.added_fill:.2f} "
            f"| {_seconds(real['seconds_to_full'])} | {_seconds(model.seconds_to_full)} "
            f"| {real['added_token_share']:.2f} | {model.added_token_share:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    print(table(validate()), end="")
    if "added_replica" in json.loads(LATEST.read_text()):
        print("\n" + added_replica_table(), end="")
