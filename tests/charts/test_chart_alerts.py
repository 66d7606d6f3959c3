"""The chart's alerts: rendered when they can work, valid for promtool, and each one firing on
the series it is about (promtool's rule unit tests), with a runbook section to link to."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.charts import MINIMAL_VALUES, REPO, Helm, Manifest
from tests.support.promql import (
    JOBS,
    alert_rules,
    known_metric_names,
    metric_names,
    rendered_rules,
    run_promtool,
    write_rules_file,
)

OPERATING = REPO / "docs" / "operating.md"
OPERATOR_API = "monitoring.coreos.com/v1/PrometheusRule"

INGEST, WORKER, QA_SYNC = JOBS["ingest"], JOBS["worker"], JOBS["qa-sync"]


@pytest.fixture(scope="module")
def rule(helm: Helm) -> Manifest:
    return rendered_rules(helm)


@pytest.fixture
def rules_file(rule: Manifest, tmp_path: Path) -> Path:
    return write_rules_file(rule, tmp_path / "rules.yaml")


def _kinds(helm: Helm, sets: dict[str, str], api_versions: tuple[str, ...] = ()) -> list[str]:
    manifests = helm.template(MINIMAL_VALUES, sets=sets, api_versions=api_versions)
    return [m["kind"] for m in manifests]


def test_auto_renders_the_rules_only_where_the_operator_serves_them(helm: Helm) -> None:
    assert "PrometheusRule" not in _kinds(helm, {})
    assert "PrometheusRule" in _kinds(helm, {}, api_versions=(OPERATOR_API,))
    assert "PrometheusRule" not in _kinds(helm, {"alerts.enabled": "false"}, (OPERATOR_API,))
    assert "PrometheusRule" in _kinds(helm, {"alerts.enabled": "true"})


def test_promtool_accepts_the_rules(rules_file: Path) -> None:
    result = run_promtool("check", "rules", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_the_rules_use_only_metrics_the_services_expose(rule: Manifest) -> None:
    known = known_metric_names()
    for alert in alert_rules(rule):
        unknown = metric_names(alert["expr"]) - known
        assert not unknown, f"{alert['alert']} uses {unknown}"


def _anchors(markdown: str) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-") for heading in headings}


SERVED_RUNBOOK = "https://git.example.com/team/feedback-platform/blob/main/docs/operating.md"


@pytest.mark.parametrize(
    ("sets", "link"),
    [({}, "docs/operating.md"), ({"alerts.runbookUrl": SERVED_RUNBOOK}, SERVED_RUNBOOK)],
    ids=["default: the runbook's path in this repository", "where the runbook is served"],
)
def test_every_alert_links_to_its_runbook_section(
    helm: Helm, sets: dict[str, str], link: str
) -> None:
    anchors = _anchors(OPERATING.read_text())
    for alert in alert_rules(rendered_rules(helm, sets)):
        url, _, anchor = alert["annotations"]["runbook_url"].partition("#")
        assert url == link, alert["annotations"]["runbook_url"]
        assert anchor in anchors, f"{alert['alert']}: no section {anchor} in {OPERATING.name}"


# --- promtool test rules: each alert fires on what it is about, and not without it -----------


def _series(name: str, job: str, values: str, **labels: str) -> dict[str, str]:
    """One promtool input series: `name{job=..., labels...}` with `values` (expanding notation)."""
    matchers = ",".join(f'{key}="{value}"' for key, value in {"job": job, **labels}.items())
    return {"series": f"{name}{{{matchers}}}", "values": values}


def _visible(queue: str, values: str) -> dict[str, str]:
    return _series("feedback_sqs_messages", INGEST, values, queue=queue, state="visible")


def _waited(le: str, values: str) -> dict[str, str]:
    return _series("feedback_worker_queue_wait_seconds_bucket", WORKER, values, le=le)


def _llm_calls(outcome: str, values: str) -> dict[str, str]:
    return _series(
        "feedback_worker_llm_duration_seconds_count", WORKER, values, model="m", outcome=outcome
    )


def _callbacks(outcome: str, values: str) -> dict[str, str]:
    return _series(
        "feedback_worker_deliveries_total", WORKER, values, target="callback", outcome=outcome
    )


def _raw_missing(values: str) -> dict[str, str]:
    return _series(
        "qa_sync_verification_failures_total", QA_SYNC, values, object="raw", problem="missing"
    )


# name -> (input series, eval time, labels the alert carries besides alertname and severity)
FIRING: dict[str, tuple[list[dict[str, str]], str, list[dict[str, str]]]] = {
    "FeedbackDeadLetterQueueNotEmpty": (
        [_visible("dead_letter", "0 0 2x20")],
        "10m",
        [{}],
    ),
    "FeedbackRequestsWaitingTooLong": (
        [
            _waited("600", "0x40"),
            _waited("3600", "0+10x40"),
            _waited("+Inf", "0+10x40"),
        ],
        "25m",
        [{}],
    ),
    "FeedbackBacklogWithoutWorkers": (
        [
            _visible("requests", "5x20"),
            _series("up", WORKER, "1 1 0x20", pod="w-1"),
        ],
        "15m",
        [{}],
    ),
    "FeedbackLLMErrorRatioHigh": (
        [
            _llm_calls("error", "0+5x40"),
            _llm_calls("ok", "0+5x40"),
        ],
        "25m",
        [{}],
    ),
    "FeedbackLLMGateClosed": (
        [_series("feedback_worker_llm_gate_open", WORKER, "0x20", pod="w-1")],
        "15m",
        [{"pod": "w-1"}],
    ),
    "FeedbackCallbackFailing": (
        [
            _callbacks("transient_failure", "0+3x40"),
            _callbacks("delivered", "0+3x40"),
        ],
        "25m",
        [{}],
    ),
    "QaSyncVerificationFailures": (
        [_raw_missing("0 0 1x10")],
        "5m",
        [{"object": "raw", "problem": "missing"}],
    ),
    "QaSyncRepairFailed": (
        [_series("qa_sync_repair_failures_total", QA_SYNC, "0 0 1x10")],
        "5m",
        [{}],
    ),
    "QaSyncJobsStuckPending": (
        [_series("qa_sync_jobs", QA_SYNC, "1x1800", status="pending")],
        "27h",
        [{}],
    ),
}

# The same alerts where nothing is wrong: the healthy twin of each firing case.
QUIET: dict[str, tuple[list[dict[str, str]], str]] = {
    "FeedbackDeadLetterQueueNotEmpty": (
        [_visible("dead_letter", "0x20")],
        "10m",
    ),
    "FeedbackRequestsWaitingTooLong": (
        [
            _waited("600", "0+10x40"),
            _waited("+Inf", "0+10x40"),
        ],
        "25m",
    ),
    "FeedbackBacklogWithoutWorkers": (
        [
            _visible("requests", "5x20"),
            _series("up", WORKER, "1x20", pod="w-1"),
        ],
        "15m",
    ),
    "FeedbackLLMErrorRatioHigh": (
        [
            _llm_calls("error", "0x40"),
            _llm_calls("ok", "0+5x40"),
        ],
        "25m",
    ),
    "FeedbackLLMGateClosed": (
        [_series("feedback_worker_llm_gate_open", WORKER, "0 0 1x20", pod="w-1")],
        "15m",
    ),
    "FeedbackCallbackFailing": (
        [_callbacks("delivered", "0+3x40")],
        "25m",
    ),
    "QaSyncVerificationFailures": (
        [_raw_missing("0x10")],
        "5m",
    ),
    "QaSyncRepairFailed": (
        [_series("qa_sync_repair_failures_total", QA_SYNC, "0x10")],
        "5m",
    ),
    "QaSyncJobsStuckPending": (
        # A job pending for 20 hours, then done: not stuck.
        [_series("qa_sync_jobs", QA_SYNC, "1x1200 0x600", status="pending")],
        "27h",
    ),
}


def _expected(alert: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    annotations = {
        key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], value)
        for key, value in alert["annotations"].items()
    }
    return {
        "exp_labels": {"severity": alert["labels"]["severity"], **labels},
        "exp_annotations": annotations,
    }


def _unit_tests(rule: Manifest) -> list[dict[str, Any]]:
    alerts = {alert["alert"]: alert for alert in alert_rules(rule)}
    tests = []
    for name, (series, at, label_sets) in FIRING.items():
        expected = [_expected(alerts[name], labels) for labels in label_sets]
        tests.append(
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": expected}],
            }
        )
    for name, (series, at) in QUIET.items():
        tests.append(
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": []}],
            }
        )
    return tests


def test_every_alert_has_a_firing_and_a_quiet_case(rule: Manifest) -> None:
    names = {alert["alert"] for alert in alert_rules(rule)}
    assert names == set(FIRING) == set(QUIET)


def test_promtool_rule_tests_pass(rule: Manifest, rules_file: Path, tmp_path: Path) -> None:
    tests = tmp_path / "alerts.test.yaml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [rules_file.name],
                "evaluation_interval": "1m",
                "tests": _unit_tests(rule),
            },
            allow_unicode=True,
        )
    )
    result = run_promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
