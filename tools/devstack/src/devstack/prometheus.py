"""A real Prometheus (Debian's `prometheus` package) scraping the local stack.

`make run` starts it when the binary is there; the alerts' end-to-end test starts it with the
chart's rules. Jobs are named as the chart's ServiceMonitors name them for a release called
`feedback-platform` (`feedback-platform-ingest`, ...), so the chart's rules and dashboard work
here unchanged.
"""

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from devstack.processes import ManagedProcess

RELEASE = "feedback-platform"
"""The release name the jobs are named after."""


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def write_config(
    path: Path,
    targets: Mapping[str, str],
    rule_files: Sequence[Path] = (),
    interval: str = "5s",
) -> Path:
    """prometheus.yml scraping `targets` (component -> host:port, path /metrics) every
    `interval`, evaluating `rule_files` as often. Written as JSON, which is YAML too."""
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rule_file) for rule_file in rule_files],
        "scrape_configs": [
            {"job_name": f"{RELEASE}-{component}", "static_configs": [{"targets": [target]}]}
            for component, target in targets.items()
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path


def prometheus_process(binary: str, config: Path, data_dir: Path, port: int) -> ManagedProcess:
    """The server, on 127.0.0.1 only, ready once `/-/ready` answers."""
    return ManagedProcess(
        name="prometheus",
        argv=[
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            # No console templates in the Debian package's default paths outside /etc.
            "--storage.tsdb.retention.time=1d",
        ],
        log_path=data_dir.parent / "logs" / "prometheus.log",
        ready_url=f"http://127.0.0.1:{port}/-/ready",
    )
