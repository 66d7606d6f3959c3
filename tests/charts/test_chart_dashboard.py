"""The Grafana dashboard: shipped where kube-prometheus-stack's sidecar finds it, every query valid
for promtool, and only metrics the services expose."""

import json
from pathlib import Path

import yaml

from tests.support.charts import MINIMAL_VALUES, Helm, objects
from tests.support.promql import (
    DASHBOARD,
    dashboard,
    dashboard_exprs,
    known_metric_names,
    metric_names,
    run_promtool,
)

# The request's path, in order, then qa-sync, then what the time range cost.
ROWS = [
    "Accepted (ingest)",
    "Queue",
    "LLM",
    "Delivery and DLQ",
    "qa-sync",
    "Cost of the time range (a burst)",
]


def test_the_dashboard_is_a_configmap_the_grafana_sidecar_loads(helm: Helm) -> None:
    (config_map,) = [
        m
        for m in objects(helm.template(MINIMAL_VALUES), "ConfigMap")
        if m["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboard"
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["feedback-platform.json"]) == dashboard()


def test_the_dashboard_can_be_switched_off(helm: Helm) -> None:
    manifests = helm.template(MINIMAL_VALUES, sets={"dashboards.enabled": "false"})
    components = {m["metadata"]["labels"].get("app.kubernetes.io/component") for m in manifests}
    assert "dashboard" not in components


def test_the_rows_follow_the_request() -> None:
    rows = [panel["title"] for panel in dashboard()["panels"] if panel["type"] == "row"]
    assert rows == ROWS


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    # promtool parses expressions in rule files: each query becomes a recording rule.
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": DASHBOARD.stem, "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_every_query_uses_only_metrics_the_services_expose() -> None:
    known = known_metric_names()
    for expr in dashboard_exprs():
        names = metric_names(expr)
        assert names, f"no metric in {expr}"
        assert names <= known, f"{expr} uses {names - known}"
