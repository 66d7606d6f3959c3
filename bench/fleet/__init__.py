"""7. The fleet: the weekly burst on a simulated cluster, as the chart would scale it.

`python -m bench fleet` runs, for 20,000, 200,000 and 1,000,000 requests from an empty pool,
the chart's defaults; at 20,000 also with one replica pre-warmed for the week's boundary; at
200,000 also the burst accepted over ten minutes instead of at once, a worker pod lost
mid-burst, and a replica's node lost mid-burst (with kube-proxy's
per-connection balancing and with per-request balancing); at 1,000,000 also issue 23's target
shape: accepted over ten minutes, due 8 hours after the week's boundary.
Each scenario's figures (GPU-hours paid ÷ ideal, cost, first delivery, p50/p99 accepted →
delivered, share on time) go to the bench's table; replicas and backlog over time to
bench/results/fleet.png and fleet.csv.

The parts, each a module to read top to bottom:
- bench/fleet/chart.py: what is read from `helm template` (ScaledObjects, HPA behaviour, the
  worker's gate settings, vLLM's --max-num-seqs and startup probe);
- bench/fleet/autoscaling.py: KEDA's loop and the HPA's algorithm;
- bench/fleet/model.py: the queue, worker pods (the LLM gate's own `next_limit`), vLLM replicas
  (the simulator's own `Engine`), GPU nodes and their delays, the Service's balancing;
- bench/fleet/scenarios.py: a scenario, its run and its figures;
- bench/fleet/report.py: the table, the CSV and the plot;
- bench/fleet/validation.py: the model configured as each gate-on run of the burst bench
  (section 5) beside its measured drain and batch fill (`python -m bench.fleet.validation`).
"""

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devstack.fakes.llm.engine import Calibration, Fitted, OutputLengths

from bench.fleet import report
from bench.fleet.model import Balancing, Delays
from bench.fleet.scenarios import Scenario, run

REQUESTS = (20_000, 200_000, 1_000_000)
GPU_PRICE = 4.0
"""USD per GPU-hour: an assumption for one H100 on demand; pass your own (--fleet-gpu-price)."""
ARRIVAL_S = 600.0
"""The backend's requests spread over ten minutes (it asks "within minutes", docs/deploying.md)."""
TARGET_DEADLINE_S = 8 * 3600.0
"""Issue 23's target: a million requests accepted over ten minutes, all delivered within 8 hours."""
PREWARM = (("timezone", "Asia/Seoul"), ("start", "54 23 * * 0"), ("end", "10 0 * * 1"))
"""A pre-warm window (`vllm.autoscaling.prewarm`) for the week's boundary (Monday 00:00 in
Seoul, bench/fleet/model.py WEEK_BOUNDARY): opened 6 minutes ahead, a cold start (279 s at the
default delays) and a poll or two; closed 10 minutes after, when the queue holds the pool."""


def prewarm_sets(replicas: int) -> tuple[tuple[str, str], ...]:
    """PREWARM with `replicas`, as helm --set pairs."""
    window = (*PREWARM, ("replicas", str(replicas)))
    return tuple((f"vllm.autoscaling.prewarm[0].{key}", value) for key, value in window)


LOSS_AT_S = 1200.0
"""A replica's (or a worker pod's) node lost 20 minutes into the burst: mid-burst at 200,000 on
four replicas (about an hour); a replica's replacement is ready about 5 minutes later. (At an
hour in, the replacement came as the burst ended, and showed nothing about balancing.)"""


@dataclass(frozen=True)
class FleetOptions:
    requests: tuple[int, ...] = REQUESTS
    gpu_price: float = GPU_PRICE
    sets: tuple[tuple[str, str], ...] = ()
    """Your own values (--set pairs), applied to every scenario before its own."""
    delays: Path | None = None
    """A JSON object of `Delays` fields (seconds) from your own cluster."""
    calibration: Path | None = None
    """bench.calibrate's fit.json from your own engine (docs/benchmarks.md)."""


@dataclass(frozen=True)
class FleetResults:
    gpu_price: float
    delays: dict[str, float]
    calibration: dict[str, float]
    scenarios: list[dict[str, Any]] = field(default_factory=list)


def scenarios(requests: tuple[int, ...], sets: tuple[tuple[str, str], ...]) -> list[Scenario]:
    chosen = []
    for count in requests:
        chosen.append(Scenario(f"defaults {count:,}", count, sets=sets))
        if count == 20_000:
            warm = sets + prewarm_sets(replicas=1)
            chosen.append(Scenario(f"defaults {count:,}, pre-warmed", count, sets=warm))
        if count == 200_000:
            chosen += [
                Scenario(f"defaults {count:,}, over 10 min", count, ARRIVAL_S, sets),
                Scenario(
                    f"defaults {count:,}, replica lost",
                    count,
                    sets=sets,
                    lose_replica_at_s=LOSS_AT_S,
                ),
                Scenario(
                    f"defaults {count:,}, worker pod lost",
                    count,
                    sets=sets,
                    lose_worker_at_s=LOSS_AT_S,
                ),
                Scenario(
                    f"defaults {count:,}, replica lost, per-request balancing",
                    count,
                    sets=sets,
                    lose_replica_at_s=LOSS_AT_S,
                    balancing=Balancing.REQUEST,
                ),
            ]
        if count == 1_000_000:
            chosen.append(
                Scenario(
                    f"defaults {count:,}, over 10 min, due in 8 h",
                    count,
                    ARRIVAL_S,
                    sets,
                    deadline_s=TARGET_DEADLINE_S,
                )
            )
    return chosen


def run_section(options: FleetOptions) -> FleetResults:
    delays = Delays(**json.loads(options.delays.read_text())) if options.delays else Delays()
    if options.calibration:
        fitted = Fitted.load(options.calibration, max_num_seqs=256)  # the chart's replaces it
        calibration, lengths = fitted.calibration, fitted.lengths
    else:
        calibration, lengths = Calibration.published(), OutputLengths()
    results = FleetResults(options.gpu_price, asdict(delays), asdict(calibration))
    series = {}
    for scenario in scenarios(options.requests, options.sets):
        figures, samples = run(scenario, delays, calibration, lengths, options.gpu_price)
        results.scenarios.append(asdict(figures))
        series[scenario.name] = samples
        print(f"bench: fleet {scenario.name}: {figures.wall_s:.0f} s", file=sys.stderr, flush=True)
    report.write_series(series)
    return results


table = report.table
