"""The figures as a Markdown table (printed and written), JSON and a PNG plot."""

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the plot goes to a file
import matplotlib.pyplot as plt

from bench import added_replica, burst, engine_burst, fleet, mixed_traffic

RESULTS = Path(__file__).resolve().parent / "results"


def write(results: dict[str, Any]) -> str:
    """Write latest.json, latest.md and latest.png under bench/results; return the Markdown."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    markdown = tables(results)
    (RESULTS / "latest.md").write_text(markdown)
    plot(results, RESULTS / "latest.png")
    return markdown


def measured_line(measured: dict[str, dict[str, str]]) -> str:
    """Where a section was rerun alone (`python -m bench burst`), the others are older."""
    by_run: dict[str, list[str]] = {}
    for section, run in measured.items():
        by_run.setdefault(f"commit {run['commit']} on {run['date']}", []).append(section)
    return "".join(f"Measured at {run}: {', '.join(names)}.\n" for run, names in by_run.items())


def tables(r: dict[str, Any]) -> str:
    m = r["machine"]
    parts = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"{m['os']}; commit {m['commit']}; load average at start {m['load_average']}; "
        f"run took {r['duration_s']:.0f} s.\n",
        measured_line(r.get("measured", {})),
    ]
    # A section never run yet (e.g. only `python -m bench burst` so far) has no table.
    for key, render in (
        ("worker_throughput", worker_table),
        ("added_latency", latency_table),
        ("ingest", ingest_table),
        ("qa_sync", qa_sync_table),
        ("burst", burst.table),
        ("engine_burst", engine_burst.table),
        ("fleet", fleet.table),
        ("added_replica", added_replica.table),
        ("mixed_traffic", mixed_traffic.table),
    ):
        if key in r:
            parts.append(render(r[key]))
    return "\n".join(parts)


def worker_table(w: dict[str, Any]) -> str:
    b = w["baseline"]
    lines = [
        f"### 1. Worker throughput (LLM latency {w['latency_s']:.1f} s, moto SQS, callback "
        "delivery)\n",
        "| in flight | msg/s | ideal msg/s | ratio to ideal | worker CPU ms/msg | moto CPU ms/msg "
        "| LLM max in flight | baseline msg/s (one at a time) | vs baseline |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in w["rows"]:
        lines.append(
            f"| {row['in_flight']} | {row['per_second']:.1f} | {row['ideal_per_second']:.0f} "
            f"| {row['ratio']:.2f} | {row['worker_cpu_ms_per_message']:.1f} "
            f"| {row['emulator_cpu_ms_per_message']:.1f} | {row['llm_max_in_flight']} "
            f"| {b['per_second']:.2f} | {row['per_second'] / b['per_second']:.1f} |"
        )
    verdict = "met" if w["target_met"] else "NOT met"
    lines.append(
        f"\nBaseline (one message at a time): {b['per_second']:.2f} msg/s, ratio "
        f"{b['ratio']:.2f}, {b['worker_cpu_ms_per_message']:.1f} ms CPU/msg. Target ≥ "
        f"{w['target_ratio']} of ideal at {w['target_in_flight']} in flight: **{verdict}**.\n"
    )
    return "\n".join(lines)


def latency_table(a: dict[str, Any]) -> str:
    def row(name: str, measured: dict[str, float], baseline: dict[str, float], what: str) -> str:
        return (
            f"| {name} | {measured['p50_ms']:.1f} | {measured['p99_ms']:.1f} | {what} "
            f"| {baseline['p50_ms']:.1f} | {baseline['p99_ms']:.1f} |"
        )

    return "\n".join(
        [
            f"### 2. Added latency on the local stack ({a['requests']} requests, fake LLM "
            f"{a['llm_latency_s']:.1f} s subtracted)\n",
            "| hop | p50 ms | p99 ms | baseline | baseline p50 ms | baseline p99 ms |",
            "|---|---:|---:|---|---:|---:|",
            row(
                "202 → LLM call starts",
                a["accepted_to_llm"],
                a["baseline_queue_hop"],
                "bare SQS send + receive + delete",
            ),
            row(
                "LLM answer → callback arrives",
                a["llm_to_callback"],
                a["baseline_callback_post"],
                "bare signed POST to the receiver",
            ),
            "",
        ]
    )


def ingest_table(i: dict[str, Any]) -> str:
    f, s, h = i["feedback"], i["with_store"], i["baseline_healthz"]
    fc, sc, fo, so = f["concurrent"], s["concurrent"], f["one_at_a_time"], s["one_at_a_time"]
    return "\n".join(
        [
            f"### 3. Ingest at {i['clients']} concurrent clients, and one request at a time\n",
            "| measure | POST /ai/feedback | with the request store | baseline |",
            "|---|---:|---:|---:|",
            f"| requests/s | {fc['per_second']:.0f} | {sc['per_second']:.0f} "
            f"| {h['per_second']:.0f} (GET /healthz) |",
            f"| p50 / p99 ms | {fc['p50_ms']:.0f} / {fc['p99_ms']:.0f} "
            f"| {sc['p50_ms']:.0f} / {sc['p99_ms']:.0f} "
            f"| {h['p50_ms']:.0f} / {h['p99_ms']:.0f} (GET /healthz) |",
            f"| p50 / p99 ms, one request at a time ({fo['requests']}) "
            f"| {fo['p50_ms']:.1f} / {fo['p99_ms']:.1f} | {so['p50_ms']:.1f} / {so['p99_ms']:.1f} "
            "| |",
            f"| accepted | {fc['ok']}/{fc['requests']} | {sc['ok']}/{sc['requests']} "
            f"| {h['ok']}/{h['requests']} |",
            f"| SQS API calls per accepted request | {i['sqs_calls_per_accepted']:.2f} "
            f"| {i['sqs_calls_per_accepted']:.2f} "
            f"| {i['baseline_sqs_calls_per_accepted']:.0f} (the floor) |",
            f"| DynamoDB API calls per accepted request | 0 | {i['store_calls_per_accepted']:.2f} "
            "| |",
            f"| validation µs per request ({i['body_bytes']} B body) | {i['validation_us']:.1f} "
            f"| | {i['baseline_json_loads_us']:.1f} (json.loads) |",
            f"| CPU ms per request: ingest / moto SQS / moto DynamoDB "
            f"| {f['ingest_cpu_ms_per_request']:.1f} / {f['emulator_cpu_ms_per_request']:.1f} / - "
            f"| {s['ingest_cpu_ms_per_request']:.1f} / {s['emulator_cpu_ms_per_request']:.1f} / "
            f"{s['store_emulator_cpu_ms_per_request']:.1f} | |",
            "",
        ]
    )


def qa_sync_table(q: dict[str, Any]) -> str:
    lines = [
        "### 4. qa-sync: one batch output, ~4 KB lines\n",
        "| lines | output MiB | streaming s | streaming peak RSS MiB (growth) "
        "| load-all s | load-all peak RSS MiB (growth) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s, b in zip(q["streaming"], q["baseline_load_all"], strict=True):
        lines.append(
            f"| {s['lines']:,} | {s['output_mib']:.0f} | {s['seconds']:.1f} "
            f"| {s['peak_rss_mib']:.0f} ({s['growth_mib']:+.0f}) | {b['seconds']:.1f} "
            f"| {b['peak_rss_mib']:.0f} ({b['growth_mib']:+.0f}) |"
        )
    lines.append(
        f"\nMemory growth from the smallest to the largest file: x{q['growth_ratio_streaming']} "
        f"streaming, x{q['growth_ratio_baseline']} loading everything.\n"
    )
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> None:
    if not all(key in r for key in ("worker_throughput", "added_latency", "ingest", "qa_sync")):
        return
    rows = 3 if "burst" in r else 2
    figure, panels = plt.subplots(rows, 2, figsize=(12, 4.5 * rows), squeeze=False)
    (top_left, top_right), (bottom_left, bottom_right) = panels[0], panels[1]
    w = r["worker_throughput"]
    in_flight = [row["in_flight"] for row in w["rows"]]
    top_left.plot(in_flight, [row["ideal_per_second"] for row in w["rows"]], "k--", label="ideal")
    top_left.plot(in_flight, [row["per_second"] for row in w["rows"]], "o-", label="worker")
    top_left.axhline(w["baseline"]["per_second"], color="grey", label="one at a time")
    top_left.set(
        xscale="log",
        yscale="log",
        xlabel="messages in flight",
        ylabel="messages/s",
        title=f"1. Worker throughput (LLM {w['latency_s']:.0f} s)",
    )
    top_left.set_xticks(in_flight, [str(n) for n in in_flight])
    top_left.legend()

    a = r["added_latency"]
    hops = ["202 → LLM", "LLM → callback"]
    measured = [a["accepted_to_llm"], a["llm_to_callback"]]
    baseline = [a["baseline_queue_hop"], a["baseline_callback_post"]]
    x = range(len(hops))
    top_right.bar([i - 0.3 for i in x], [m["p50_ms"] for m in measured], 0.2, label="p50")
    top_right.bar([i - 0.1 for i in x], [m["p99_ms"] for m in measured], 0.2, label="p99")
    top_right.bar([i + 0.1 for i in x], [b["p50_ms"] for b in baseline], 0.2, label="bare hop p50")
    top_right.bar([i + 0.3 for i in x], [b["p99_ms"] for b in baseline], 0.2, label="bare hop p99")
    top_right.set_xticks(list(x), hops)
    top_right.set(ylabel="ms", title="2. Added latency (local stack)")
    top_right.legend()

    i = r["ingest"]
    plain, stored = i["feedback"]["concurrent"], i["with_store"]["concurrent"]
    bottom_left.bar(
        ["POST /ai/feedback", "POST, request store", "GET /healthz (baseline)"],
        [plain["per_second"], stored["per_second"], i["baseline_healthz"]["per_second"]],
    )
    bottom_left.set(
        ylabel="requests/s",
        title=f"3. Ingest, {i['clients']} clients (p99 {plain['p99_ms']:.0f} ms, "
        f"with the store {stored['p99_ms']:.0f} ms)",
    )

    q = r["qa_sync"]
    lines = [run["lines"] for run in q["streaming"]]
    bottom_right.plot(
        lines, [run["peak_rss_mib"] for run in q["streaming"]], "o-", label="qa-sync (streaming)"
    )
    bottom_right.plot(
        lines,
        [run["peak_rss_mib"] for run in q["baseline_load_all"]],
        "s--",
        label="load everything (baseline)",
    )
    bottom_right.set(xlabel="output lines", ylabel="peak RSS MiB", title="4. qa-sync peak memory")
    bottom_right.legend()

    if "burst" in r:
        burst_panels(r["burst"], panels[2][0], panels[2][1])

    m = r["machine"]
    figure.suptitle(f"make bench — {m['cpu']}, {m['cores']} cores, commit {m['commit']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def burst_panels(b: dict[str, Any], drain: Any, fill: Any) -> None:
    """5. The weekly burst: drain ÷ ideal and batch fill, the gate beside the baseline."""
    configs = sorted({(run["replicas"], run["workers"], run["restart"]) for run in b["runs"]})
    names = [
        f"{replicas} vLLM\n{workers} workers" + ("\nrestart" if restart else "")
        for replicas, workers, restart in configs
    ]
    x = range(len(configs))

    def figure_of(key: str, gate: bool) -> list[float]:
        # A run that did not deliver everything has no drain to compare (its table row says why).
        by_config = {
            (run["replicas"], run["workers"], run["restart"]): (
                run[key] if run["complete"] or key != "drain_ratio" else math.nan
            )
            for run in b["runs"]
            if run["gate"] == gate
        }
        return [by_config.get(config, 0.0) for config in configs]

    for panel, key, target, label in (
        (drain, "drain_ratio", 1.1, "drain ÷ ideal"),
        (fill, "batch_fill", 0.9, "batch fill"),
    ):
        panel.bar([i - 0.2 for i in x], figure_of(key, True), 0.4, label="LLM gate on")
        panel.bar([i + 0.2 for i in x], figure_of(key, False), 0.4, label="off (baseline)")
        panel.axhline(target, color="k", linestyle="--", label=f"target {target}")
        panel.set_xticks(list(x), names, fontsize=8)
        panel.set(ylabel=label, title=f"5. Weekly burst ({b['requests']} requests): {label}")
        panel.legend(fontsize=8)
