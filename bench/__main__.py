"""`python -m bench` (`make bench`): every measurement, then the table, JSON and plot."""

import logging
import sys
import time
from dataclasses import asdict
from typing import Any

from bench import added_latency, ingest_load, qa_sync_memory, report, worker_throughput
from bench.machine import machine_info


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine_info()}
    for name, measure in (
        ("worker_throughput", worker_throughput.run),
        ("added_latency", added_latency.run),
        ("ingest", ingest_load.run),
        ("qa_sync", qa_sync_memory.run),
    ):
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        section_started = time.monotonic()
        results[name] = asdict(measure())
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
