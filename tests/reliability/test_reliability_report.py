"""`python -m tests.support.reliability_report`: the recorded figures as one Markdown table."""

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.reliability_report import main


def _record(directory: Path, name: str, **fields: Any) -> None:
    record = {"scenario": "1. Kills", "check": "kill", "outcome": "passed", "figures": {}}
    (directory / f"{name}.json").write_text(json.dumps({**record, **fields}))


def test_the_table_has_a_row_per_check_and_one_for_the_log_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _record(tmp_path, "a", figures={"lost": 0}, log_scan={"log lines": 10, "secrets found": 0})
    _record(tmp_path, "b", scenario="2. Outage", check="case", figures={"x 10": 400})
    _record(tmp_path, "c", scenario="2. Outage", check="case", figures={"x 11": 413})

    assert main(["--dir", str(tmp_path)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| Scenario | Check | Result | Figures |"
    assert lines[2] == "| 1. Kills | kill | pass | lost: 0 |"
    assert lines[3] == "| 2. Outage | case | pass | x 10: 400; x 11: 413 |"
    assert lines[4].startswith("| 7. Security: secrets in logs |")
    assert "log lines: 10; secrets found: 0" in lines[4]


def test_a_failed_check_or_no_figures_at_all_is_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--dir", str(tmp_path / "none")]) == 1
    _record(tmp_path, "a", outcome="failed", figures={"lost": 3})

    assert main(["--dir", str(tmp_path)]) == 1
    assert "**FAILED**" in capsys.readouterr().out


def test_scenarios_are_in_their_numbers_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for scenario in ("10. Peers", "2. Outage", "9. Delivery"):
        _record(tmp_path, scenario, scenario=scenario)

    assert main(["--dir", str(tmp_path)]) == 0

    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| 2. Outage", "| 9. Delivery", "| 10. Peers"]
