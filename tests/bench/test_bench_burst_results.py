"""The weekly burst's results: a burst of 20,000 is measured a few configurations at a time, so a
rerun of some keeps the others' figures (bench/burst.py: merge), and the command line says
which configurations run."""

from typing import Any

import pytest

from bench import burst
from bench.__main__ import parser


def result(requests: int, *runs: tuple[int, int, bool, bool, str]) -> dict[str, Any]:
    return {
        "requests": requests,
        "time_scale": 1.0,
        "sqs": "fauxqs",
        "max_num_seqs": 256,
        "worker_concurrency": 512,
        "runs": [
            {"replicas": r, "workers": w, "gate": gate, "restart": restart, "measured": measured}
            for r, w, gate, restart, measured in runs
        ],
    }


def configs_of(merged: dict[str, Any]) -> list[tuple[int, int, bool, bool, str]]:
    return [
        (run["replicas"], run["workers"], run["gate"], run["restart"], run["measured"])
        for run in merged["runs"]
    ]


def pair(
    replicas: int, workers: int, restart: bool, measured: str
) -> list[tuple[int, int, bool, bool, str]]:
    """A configuration's two runs: the gate's, then the baseline's."""
    return [(replicas, workers, gate, restart, measured) for gate in (True, False)]


def test_a_rerun_of_one_configuration_keeps_the_others_at_the_same_size() -> None:
    earlier = result(
        20_000, *pair(1, 4, False, "old"), *pair(2, 1, False, "old"), *pair(1, 4, True, "old")
    )
    rerun = result(20_000, *pair(2, 1, False, "new"))

    assert configs_of(burst.merge(earlier, rerun)) == [
        *pair(1, 4, False, "old"),
        *pair(2, 1, False, "new"),
        *pair(1, 4, True, "old"),
    ]


def test_a_run_of_another_size_replaces_every_earlier_run() -> None:
    earlier = result(1_000, *pair(1, 4, False, "old"))
    rerun = result(20_000, *pair(2, 1, False, "new"))

    assert configs_of(burst.merge(earlier, rerun)) == pair(2, 1, False, "new")
    assert configs_of(burst.merge(None, rerun)) == configs_of(rerun)


def test_the_command_line_names_the_configurations_to_run() -> None:
    args = parser().parse_args(["burst", "--burst-configs", "2x1,1x8", "--burst-restart", "none"])

    assert args.burst_configs == ((2, 1), (1, 8))
    assert args.burst_restart == ()
    defaults = parser().parse_args(["burst"])
    assert defaults.burst_configs == burst.CONFIGS
    assert defaults.burst_restart == burst.RESTART_CONFIGS


@pytest.mark.parametrize("wrong", ["2", "2x", "0x4", "2x1,x", "two"])
def test_a_configuration_that_is_not_replicas_x_workers_is_refused(
    wrong: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["burst", "--burst-configs", wrong])

    assert exit_.value.code == 2
    assert "want replicas x workers" in capsys.readouterr().err
