"""The reliability suite's figures as one Markdown table: what `make reliability` prints.

Each test in tests/reliability writes one JSON file into RELIABILITY_REPORT_DIR (default
`.run/reliability`):

    {"scenario": "1. Worker killed", "check": "SIGKILL and restart ...", "outcome": "passed",
     "figures": {"requests accepted": 200, ...}, "log_scan": {"files": 5, "lines": 900, "hits": 0}}

    python -m tests.support.reliability_report [--dir DIR]

Exit status 1 when a recorded test did not pass, or when nothing was recorded.
"""

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_DIR_ENV = "RELIABILITY_REPORT_DIR"
DEFAULT_REPORT_DIR = Path(".run") / "reliability"
LOG_SCAN_SCENARIO = "7. Security: secrets in logs"


def report_dir() -> Path:
    return Path(os.environ.get(REPORT_DIR_ENV) or DEFAULT_REPORT_DIR)


@dataclass(frozen=True)
class Record:
    scenario: str
    check: str
    outcome: str
    figures: dict[str, Any]
    log_scan: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> "Record":
        raw = json.loads(path.read_text())
        return cls(
            scenario=raw["scenario"],
            check=raw["check"],
            outcome=raw["outcome"],
            figures=raw.get("figures", {}),
            log_scan=raw.get("log_scan", {}),
        )


def scenario_order(scenario: str) -> tuple[int, str]:
    """Scenarios by their number ("10. ..." after "9. ..."), then by name."""
    number, _, _ = scenario.partition(".")
    return (int(number) if number.isdigit() else sys.maxsize, scenario)


def read_records(directory: Path) -> list[Record]:
    return [Record.read(path) for path in sorted(directory.glob("*.json"))]


def merge_parametrized(records: list[Record]) -> list[Record]:
    """One row per (scenario, check): a parametrized test's cases side by side."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        groups.setdefault((record.scenario, record.check), []).append(record)
    return [_merged(group) for group in groups.values()]


def _merged(group: list[Record]) -> Record:
    if len(group) == 1:
        return group[0]
    names = [name for record in group for name in record.figures]
    if len(names) == len(set(names)):  # each case names its own figures
        figures = {name: value for record in group for name, value in record.figures.items()}
    else:
        figures = {f"case {n}": _figures(r.figures) for n, r in enumerate(group, start=1)}
    failed = [record.outcome for record in group if record.outcome != "passed"]
    log_scan: dict[str, int] = {}
    for record in group:
        for name, value in record.log_scan.items():
            log_scan[name] = log_scan.get(name, 0) + value
    first = group[0]
    outcome = failed[0] if failed else "passed"
    return Record(first.scenario, first.check, outcome, figures, log_scan)


def log_scan_total(records: list[Record]) -> Record | None:
    """Every test's scan of the logs it produced, added up into one row."""
    scanned = [record for record in records if record.log_scan]
    if not scanned:
        return None
    totals: dict[str, int] = {}
    for record in scanned:
        for name, value in record.log_scan.items():
            totals[name] = totals.get(name, 0) + value
    figures: dict[str, Any] = {"tests scanned": len(scanned), **totals}
    outcome = "passed" if totals.get("secrets found", 0) == 0 else "failed"
    check = "every log line the suite produced, searched for every configured secret"
    return Record(LOG_SCAN_SCENARIO, check, outcome, figures)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _figures(figures: dict[str, Any]) -> str:
    return "; ".join(f"{name}: {value}" for name, value in figures.items())


def markdown_table(records: list[Record]) -> str:
    rows = ["| Scenario | Check | Result | Figures |", "|---|---|---|---|"]
    for record in records:
        result = "pass" if record.outcome == "passed" else f"**{record.outcome.upper()}**"
        cells = (record.scenario, record.check, result, _figures(record.figures))
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.reliability_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dir", type=Path, default=report_dir())
    args = parser.parse_args(argv)
    records = read_records(args.dir) if args.dir.is_dir() else []
    if not records:
        print(f"no figures in {args.dir}: run `pytest tests/reliability` first", file=sys.stderr)
        return 1
    total = log_scan_total(records)
    rows = sorted(merge_parametrized(records), key=lambda record: scenario_order(record.scenario))
    shown = [*rows, total] if total else rows
    print(markdown_table(shown))
    return 0 if all(record.outcome == "passed" for record in shown) else 1


if __name__ == "__main__":
    sys.exit(main())
