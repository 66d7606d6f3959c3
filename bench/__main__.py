"""`python -m bench` (`make bench`): every measurement, then the table, JSON and plot.

`python -m bench burst` (or any list of sections) runs only those; the figures of the others
are kept from the last run's bench/results/latest.json. `engine_burst` runs only when named: it
needs vLLM (`make vllm`) and a quiet machine (bench/engine_burst.py). `fleet` (bench/fleet/)
runs only when named too: it simulates a cluster rather than measuring this machine; and
`added_replica` (bench/added_replica.py), ten minutes of one scenario; and `mixed_traffic`
(bench/mixed_traffic.py), the burst beside interactive chat, a quarter of an hour.
"""

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

from bench import (
    added_latency,
    added_replica,
    burst,
    engine_burst,
    fleet,
    ingest_load,
    mixed_traffic,
    qa_sync_memory,
    report,
    worker_throughput,
)
from bench.machine import machine_info


def sections(args: argparse.Namespace, measured: str) -> dict[str, Callable[[], Any]]:
    options = burst.BurstOptions(
        requests=args.burst_requests,
        time_scale=args.burst_time_scale,
        sqs=args.burst_sqs,
        configs=args.burst_configs,
        restart_configs=args.burst_restart,
    )
    engine_options = engine_burst.EngineBurstOptions(
        requests=args.engine_requests,
        workers=args.engine_workers,
        replicas=args.engine_replicas,
        max_num_seqs=args.engine_max_num_seqs,
        max_tokens=args.engine_max_tokens,
        sqs=args.burst_sqs,
    )
    return {
        "worker_throughput": worker_throughput.run,
        "added_latency": added_latency.run,
        "ingest": ingest_load.run,
        "qa_sync": qa_sync_memory.run,
        "burst": lambda: burst.run(options, measured),
        "engine_burst": lambda: engine_burst.run(engine_options, measured),
        "added_replica": added_replica.run,
        "mixed_traffic": lambda: mixed_traffic.run(
            mixed_traffic.MixedOptions(
                requests=args.mixed_requests,
                time_scale=args.mixed_time_scale,
                interactive_per_s=args.mixed_interactive_per_s,
                sqs=args.burst_sqs,
            ),
            measured,
        ),
        "fleet": lambda: fleet.run_section(
            fleet.FleetOptions(
                requests=args.fleet_requests,
                gpu_price=args.fleet_gpu_price,
                sets=tuple(args.fleet_set),
                delays=args.fleet_delays,
                calibration=args.fleet_calibration,
            )
        ),
    }


NAMED_ONLY = {"engine_burst", "fleet", "added_replica", "mixed_traffic"}
"""Sections a plain `python -m bench` leaves out."""


def configs(text: str) -> tuple[tuple[int, int], ...]:
    """`2x1,1x4` → ((2, 1), (1, 4)); `none` → ()."""
    if text == "none":
        return ()
    try:
        pairs = [tuple(int(n) for n in item.split("x")) for item in text.split(",")]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: want replicas x workers, e.g. 2x1,1x4")
    return tuple((p[0], p[1]) for p in pairs)


def counts(text: str) -> tuple[int, ...]:
    """`20000,200000` → (20000, 200000)."""
    try:
        found = tuple(int(n) for n in text.split(","))
    except ValueError:
        found = ()
    if not found or min(found) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: want request counts, e.g. 20000,200000")
    return found


def helm_set(text: str) -> tuple[str, str]:
    """`vllm.autoscaling.maxReplicas=8` → ("vllm.autoscaling.maxReplicas", "8")."""
    key, sign, value = text.partition("=")
    if not sign or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: want key=value, as helm's --set")
    return key, value


def shown(pairs: tuple[tuple[int, int], ...]) -> str:
    return ",".join(f"{r}x{w}" for r, w in pairs)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parse.add_argument(
        "sections",
        nargs="*",
        metavar="SECTION",
        help="worker_throughput, added_latency, ingest, qa_sync, burst (default: these), "
        "engine_burst, fleet, added_replica, mixed_traffic (only when named)",
    )
    for engine_flag, count, meaning in (
        ("--engine-requests", engine_burst.REQUESTS, "requests in the real-engine burst"),
        ("--engine-workers", engine_burst.WORKERS, "worker processes in the real-engine burst"),
        ("--engine-replicas", engine_burst.REPLICAS, "vLLM replicas (2: one core each)"),
        ("--engine-max-num-seqs", engine_burst.MAX_NUM_SEQS, "vLLM's --max-num-seqs there"),
        ("--engine-max-tokens", engine_burst.LLM_MAX_TOKENS, "the workers' LLM_MAX_TOKENS there"),
    ):
        parse.add_argument(
            engine_flag, type=int, default=count, help=f"{meaning} (default {count})"
        )
    for flag, kind, number, meaning in (
        ("--burst-requests", int, burst.REQUESTS, "requests in the weekly burst"),
        ("--burst-time-scale", float, burst.TIME_SCALE, "simulated GPU seconds per real second"),
        (
            "--mixed-requests",
            int,
            mixed_traffic.REQUESTS,
            "feedback requests in the mixed-traffic burst",
        ),
        (
            "--mixed-time-scale",
            float,
            mixed_traffic.TIME_SCALE,
            "its simulated GPU seconds per real second",
        ),
        (
            "--mixed-interactive-per-s",
            float,
            mixed_traffic.INTERACTIVE_PER_S,
            "interactive chat requests a virtual second beside the burst",
        ),
    ):
        parse.add_argument(flag, type=kind, default=number, help=f"{meaning} (default {number})")
    parse.add_argument(
        "--burst-sqs",
        choices=sorted(burst.SQS_EMULATORS),
        default=burst.BurstOptions.sqs,
        help="the queue's emulator in the bursts (default fauxqs: moto slows down with depth)",
    )
    for flag, default, what in (
        ("--burst-configs", burst.CONFIGS, "vLLM replicas x worker processes of the bursts"),
        ("--burst-restart", burst.RESTART_CONFIGS, "the same for the restart scenario, or none"),
    ):
        parse.add_argument(
            flag,
            type=configs,
            default=default,
            metavar="RxW[,RxW...]",
            help=f"{what} (default: {shown(default)})",
        )
    parse.add_argument(
        "--fleet-requests",
        type=counts,
        default=fleet.REQUESTS,
        metavar="N[,N...]",
        help="the fleet's burst sizes (default: 20000,200000,1000000)",
    )
    parse.add_argument(
        "--fleet-gpu-price",
        type=float,
        default=fleet.GPU_PRICE,
        help=f"USD per GPU-hour in the fleet's cost (default {fleet.GPU_PRICE})",
    )
    parse.add_argument(
        "--fleet-set",
        type=helm_set,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="your own chart value for every fleet scenario, as helm --set (repeatable)",
    )
    parse.add_argument(
        "--fleet-delays",
        type=Path,
        help="JSON of the fleet's delays in seconds (bench/fleet/model.py, Delays)",
    )
    parse.add_argument(
        "--fleet-calibration",
        type=Path,
        help="bench.calibrate's fit.json for the fleet's replicas (default: the published 7B/H100)",
    )
    return parse


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    machine = machine_info()
    today = date.today().isoformat()
    available = sections(args, f"{machine['commit']} {today}")
    chosen = args.sections or [name for name in available if name not in NAMED_ONLY]
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        parser().error(f"unknown section(s): {', '.join(unknown)}")
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    previous = report.RESULTS / "latest.json"
    results: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    results["machine"] = machine
    # Which commit and day each section's figures are from: a section not chosen keeps its own.
    measured = results.setdefault("measured", {})
    for name in chosen:
        measured[name] = {"commit": machine["commit"], "date": today}
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        section_started = time.monotonic()
        figures = asdict(available[name]())
        # The burst's other configurations at the same size stay (burst.merge).
        results[name] = burst.merge(results.get(name), figures) if name == "burst" else figures
        print(
            f"bench: {name} done in {time.monotonic() - section_started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    results["duration_s"] = round(time.monotonic() - started, 1)
    print(report.write(results))
    print(f"bench: results in {report.RESULTS}/latest.{{md,json,png}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
