"""promtool, the chart's rules and dashboard as promtool sees them, and the metric names they use.

promtool comes from Debian's `prometheus` package (`.ci/run` installs it on CI, where a missing
promtool fails instead of skipping).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_common.telemetry import metrics

from tests.support.charts import CHART, MINIMAL_VALUES, Helm, Manifest

RELEASE = "feedback-platform"
"""Release name of the rendered rules: jobs are then `feedback-platform-<component>`."""
JOBS = {component: f"{RELEASE}-{component}" for component in ("ingest", "worker", "qa-sync")}
DASHBOARD = CHART / "files" / "dashboards" / "feedback-platform.json"

# Prometheus' own series about each target.
PROMETHEUS_METRICS = frozenset({"up"})


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing on CI: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, check=False, timeout=120
    )


def rendered_rules(helm: Helm, sets: dict[str, str] | None = None) -> Manifest:
    """The chart's PrometheusRule, rendered with alerts on (and `sets`)."""
    manifests = helm.template(
        MINIMAL_VALUES,
        sets={"alerts.enabled": "true", **(sets or {})},
        release=RELEASE,
        namespace="feedback",
    )
    (rule,) = [m for m in manifests if m["kind"] == "PrometheusRule"]
    return rule


def write_rules_file(rule: Manifest, path: Path) -> Path:
    """A PrometheusRule's groups as a plain Prometheus rules file."""
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, allow_unicode=True))
    return path


def alert_rules(rule: Manifest) -> Iterator[dict[str, Any]]:
    for group in rule["spec"]["groups"]:
        yield from group["rules"]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs(release: str = RELEASE) -> list[str]:
    """Every panel's queries (`panel_exprs`)."""
    return [expr for panel in dashboard()["panels"] for expr in panel_exprs(panel, release)]


def panel_exprs(panel: dict[str, Any], release: str = RELEASE) -> list[str]:
    """A panel's queries, with Grafana's variables replaced as Grafana would fill them in (the
    time range an hour, the GPU price its default)."""
    filled = {"$__rate_interval": "5m", "$__range": "1h", "$gpu_price": "4", "$release": release}
    exprs = []
    for target in panel.get("targets", []):
        expr = target["expr"]
        for variable, value in filled.items():
            expr = expr.replace(variable, value)
        exprs.append(expr)
    return exprs


_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan", "le"}
)
_NOT_NAMES = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # strings
    r"|\{[^}]*\}"  # label matchers
    r"|\[[^\]]*\]"  # ranges and subqueries
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"  # label lists
)
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, label names left out)."""
    stripped = _NOT_NAMES.sub(" ", expr)
    return {name for name in _IDENTIFIER.findall(stripped) if name.lower() not in _KEYWORDS}


def known_metric_names() -> frozenset[str]:
    """Every sample name the services expose (from their one registry), plus Prometheus' own."""
    exposed = {sample.name for family in metrics.REGISTRY.collect() for sample in family.samples}
    # Families without a series yet (labelled, nothing observed) have no samples: name them as
    # the exposition format will.
    for family in metrics.REGISTRY.collect():
        if family.type == "counter":
            exposed.add(f"{family.name}_total")
        elif family.type == "histogram":
            exposed |= {f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum")}
        elif family.type == "gauge":
            exposed.add(family.name)
    return frozenset(exposed | PROMETHEUS_METRICS)
