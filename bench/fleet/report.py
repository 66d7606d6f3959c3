"""The fleet's figures as a Markdown table, and its time series as a CSV and a plot.

The table goes into bench/results/latest.md with the other sections (bench/report.py); the
series, one row per scenario every 15 simulated seconds, are too long for latest.json and go to
bench/results/fleet.csv, drawn in bench/results/fleet.png.
"""

import csv
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the plot goes to a file
import matplotlib.pyplot as plt

from bench.fleet.model import Sample

RESULTS = Path(__file__).resolve().parents[1] / "results"


def table(f: dict[str, Any]) -> str:
    delays = ", ".join(f"{name} {value:g}" for name, value in f["delays"].items())
    lines = [
        "### 7. Fleet simulation (SimPy; the chart's ScaledObjects as rendered; validated "
        "against the burst bench: bench/fleet/validation.py)\n",
        f"Delays (s): {delays}. GPU price {f['gpu_price']:.2f} USD per GPU-hour. "
        "Ideal: the delivered work at one replica's plateau.\n",
        "| scenario | vLLM max | GPU-h paid | ÷ ideal | cost USD | first delivery | "
        "p50 / p99 accepted → delivered | on time | last delivery | peak replicas / pods | "
        "wasted tokens | received again | wall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in f["scenarios"]:
        lines.append(
            f"| {s['scenario']} | {s['vllm_max_replicas']} | {s['gpu_hours_paid']:.2f} | "
            f"{s['paid_over_ideal']:.2f} | {s['cost']:.2f} | {_duration(s['first_delivery_s'])} | "
            f"{_duration(s['p50_s'])} / {_duration(s['p99_s'])} | "
            f"{s['on_time']:.1%} by {_duration(s['deadline_s'])} | "
            f"{_duration(s['last_delivery_s'])} | {s['peak_replicas']} / {s['peak_pods']} | "
            f"{s['wasted_tokens']:,} | {s['received_again']:,} | {s['wall_s']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def write_series(series: dict[str, list[Sample]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    names = [f.name for f in fields(Sample)]
    with (RESULTS / "fleet.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["scenario", *names])
        for scenario, samples in series.items():
            writer.writerows([scenario, *asdict(s).values()] for s in samples)
    plot(series, RESULTS / "fleet.png")


def plot(series: dict[str, list[Sample]], path: Path) -> None:
    """One panel per scenario: vLLM replicas (desired, ready) and worker pods on the left,
    the backlog (visible + in flight) on the right, hours on the x axis."""
    columns = 2
    rows = math.ceil(len(series) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(12, 2.8 * rows), squeeze=False)
    for axis, (scenario, samples) in zip(axes.flat, series.items(), strict=False):
        hours = [s.time_s / 3600 for s in samples]
        axis.step(hours, [s.vllm_replicas for s in samples], where="post", label="vLLM replicas")
        axis.step(hours, [s.vllm_ready for s in samples], where="post", label="vLLM ready")
        axis.step(hours, [s.worker_pods for s in samples], where="post", label="worker pods")
        axis.set_title(scenario, fontsize=9)
        axis.set_xlabel("hours from the first request")
        backlog = axis.twinx()
        backlog.plot(hours, [s.backlog + s.in_flight for s in samples], "k:", label="backlog")
        backlog.set_ylabel("messages")
        axis.legend(loc="upper right", fontsize=7)
    for axis in axes.flat[len(series) :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
