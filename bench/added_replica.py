"""8. A replica added mid-burst, in real processes: does it get work? (issue 23, item 2)

Two simulated replicas (devstack.fakes.llm, the burst's calibration) behind
bench/round_robin_proxy.py, kube-proxy's part: each new connection goes to the next replica that
accepts it, so a stopped or loading one gets none. The second replica is stopped before the
workers start and started once ADDED_AT of the requests are delivered, as the HPA adding one
would be. The same burst runs three times: the workers' connections pinned (LLM_CONNECTION_MAX_
AGE_SECONDS a day: what they did before the age), at the worker's default age, and with the
workers reading both replicas and balancing their calls themselves (LLM_REPLICAS, as the chart
wires them over a headless Service).

Figures (the burst's clock, virtual seconds = real seconds x time scale): the added replica's
batch fill (its running ÷ max_num_seqs, sampled every 0.25 s from its start while more requests
remain than both replicas run at once), the seconds from its start until it first runs 90 % of
its batch, its share of the tokens generated after its start, and the drain.
"""

import time
from dataclasses import dataclass, replace
from typing import Any

import httpx
from feedback_worker.settings import WorkerSettings

from bench.burst import (
    SAMPLE_EVERY_S,
    BurstOptions,
    BurstSetup,
    Engines,
    burst_worker_env,
    burst_workers,
    delivered_count,
    queued_burst,
    simulated,
    simulators,
)
from bench.common import Emulator, Receiver, callback_receiver, fauxqs
from bench.engine_metrics import engine_reading
from tests.support.fakes import SimulatedLlm
from tests.support.waiting import wait_until

REQUESTS = 6_000
"""A third on one replica (~2.3 minutes), then two thirds on both (~2.3 minutes more)."""
WORKERS = 4
ADDED_AT = 1 / 3
PINNED_AGE_S = 86_400.0
"""A day: no connection ages out within a burst, as before LLM_CONNECTION_MAX_AGE_SECONDS."""
FULL = 0.9
REPLICAS = "replicas (LLM_REPLICAS)"
"""The run in which the workers balance their calls over both replicas themselves
(feedback_worker/replicas.py), the proxy only for what precedes the first reading."""


@dataclass(frozen=True)
class AddedReplicaRun:
    connections: str
    """"pinned" or "aged N s" (virtual seconds)."""
    delivered: int
    drain_s: float
    added_fill: float
    """The added replica's mean running ÷ max_num_seqs from its start, while the backlog lasts."""
    seconds_to_full: float | None
    """From its start until it first ran FULL of its batch (None: never)."""
    added_token_share: float
    """Its part of the tokens both replicas generated after its start (0.5: an even share)."""


@dataclass(frozen=True)
class AddedReplica:
    requests: int
    workers: int
    time_scale: float
    runs: list[AddedReplicaRun]


def run() -> AddedReplica:
    setup = simulated(BurstOptions(requests=REQUESTS))
    default_age = float(WorkerSettings.model_fields["llm_connection_max_age_seconds"].default)
    runs = []
    with fauxqs("fauxqs-added-replica") as aws, callback_receiver() as callback:
        for name, age_s in (
            ("pinned", PINNED_AGE_S),
            (f"aged {default_age:g} s", default_age),
            (REPLICAS, default_age),
        ):
            with simulators(2, setup.time_scale) as engines:
                env = [("LLM_CONNECTION_MAX_AGE_SECONDS", str(age_s / setup.time_scale))]
                if name == REPLICAS:
                    env.append(("LLM_REPLICAS", ",".join(_address(api) for api in engines.apis)))
                worker = replace(setup, worker_settings=tuple(env))
                runs.append(measure(aws, callback, engines, name, worker))
    return AddedReplica(REQUESTS, WORKERS, setup.time_scale, runs)


def _address(api: str) -> str:
    """`host:port` of a replica's API URL, as LLM_REPLICAS takes it."""
    return api.removeprefix("http://").rstrip("/")


def measure(
    aws: Emulator, callback: Receiver, engines: Engines, name: str, setup: BurstSetup
) -> AddedReplicaRun:
    scale, slots = setup.time_scale, setup.max_num_seqs
    _, queues = queued_burst(aws, callback, f"added-{name.split()[0]}", REQUESTS)
    added = engines.apis[1]
    SimulatedLlm(engines.controls[1]).stop()  # not there yet: its port refuses connections
    env = burst_worker_env(aws, callback, queues, engines.url, True, setup)
    with burst_workers(f"added-{name.split()[0]}", env, WORKERS):
        started = time.monotonic()
        wait_until(
            lambda: delivered_count(callback) >= ADDED_AT * REQUESTS,
            3600,
            "a third delivered",
            every=SAMPLE_EVERY_S,
        )
        SimulatedLlm(engines.controls[1]).start()
        wait_until(lambda: _up(added), 60, "the added replica")
        added_at = time.monotonic()
        before = {api: engine_reading(httpx.get(f"{api}/metrics").text) for api in engines.apis}
        fills: list[tuple[float, float]] = []

        def sampled() -> bool:
            delivered = delivered_count(callback)
            if REQUESTS - delivered > 2 * slots:
                reading = engine_reading(httpx.get(f"{added}/metrics", timeout=10).text)
                fills.append(((time.monotonic() - added_at) * scale, reading.running / slots))
            return delivered >= REQUESTS

        wait_until(sampled, 3600, f"the {name} burst", every=SAMPLE_EVERY_S)
        drain_s = (time.monotonic() - started) * scale
        after = {api: engine_reading(httpx.get(f"{api}/metrics").text) for api in engines.apis}
    generated = {
        api: after[api].generation_tokens - before[api].generation_tokens for api in engines.apis
    }
    full = next((at for at, share in fills if share >= FULL), None)
    return AddedReplicaRun(
        connections=name,
        delivered=delivered_count(callback),
        drain_s=round(drain_s, 1),
        added_fill=round(sum(s for _, s in fills) / len(fills), 3) if fills else 0.0,
        seconds_to_full=None if full is None else round(full, 1),
        added_token_share=round(generated[added] / (sum(generated.values()) or 1), 3),
    )


def _up(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def table(a: dict[str, Any]) -> str:
    lines = [
        "### 8. A replica added mid-burst (real processes; bench/added_replica.py)\n",
        f"{a['requests']:,} requests, {a['workers']} workers (LLM gate on), 2 simulated replicas "
        f"behind the per-connection proxy, the second started when {ADDED_AT:.0%} were delivered"
        f" (time scale {a['time_scale']}).",
        "",
        "| connections | delivered | drain s | added replica's batch fill | s to 90 % fill "
        "| its share of the tokens after its start |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in a["runs"]:
        to_full = "never" if r["seconds_to_full"] is None else f"{r['seconds_to_full']:.0f}"
        lines.append(
            f"| {r['connections']} | {r['delivered']:,} | {r['drain_s']:.0f} | "
            f"{r['added_fill']:.2f} | {to_full} | {r['added_token_share']:.2f} |"
        )
    return "\n".join(lines) + "\n"  # a blank line before the next section's heading
