"""The chart's rules and dashboard against a real Prometheus scraping the real local stack.

Debian's Prometheus scrapes ingest, the worker and qa-sync (devstack's Stack: moto over HTTP,
the fake LLM, the callback receiver) every second and evaluates the chart's rendered rules.
After real traffic (requests delivered, one LLM failure retried), every selector the rules and
the dashboard use must find series with those labels; then a poison message must fire
FeedbackDeadLetterQueueNotEmpty through the DLQ depth ingest publishes.
"""

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from devstack.processes import free_port
from devstack.prometheus import RELEASE, prometheus_binary
from devstack.stack import Ports, Stack, StackConfig
from llm_common.contracts.example import example_weekly_record

from tests.support.charts import Helm
from tests.support.fakes import SimulatedLlm, simulated_llm
from tests.support.promql import (
    alert_rules,
    dashboard,
    dashboard_exprs,
    panel_exprs,
    rendered_rules,
    write_rules_file,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REQUESTS = 3
MODEL = "sim-7b"
# Series that appear only with their first event, which this stack cannot cause: a damaged
# QA object in S3 found and repaired. Their families are checked on qa-sync's /metrics instead.
FIRST_EVENT_ONLY = frozenset({"qa_sync_verification_failures_total", "qa_sync_repairs_total"})
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")


def _binary() -> str:
    binary = prometheus_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is missing on CI: .ci/run installs Debian's prometheus package")
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    return binary


@pytest.fixture
def llm() -> Iterator[SimulatedLlm]:
    """vLLM's stand-in with vLLM's /metrics (the replica-hours read its `up`), ten times as fast
    as the published 7B on an H100."""
    with simulated_llm(model=MODEL, time_scale=10.0) as simulator:
        yield simulator


@pytest.fixture
def stack(helm: Helm, tmp_path: Path, llm: SimulatedLlm) -> Iterator[Stack]:
    _binary()
    # `for:` shortened so that the test sees the alert fire within seconds.
    rule = rendered_rules(helm, {"alerts.for.deadLetterQueueNotEmpty": "2s"})
    rules_file = write_rules_file(rule, tmp_path / "rules.yaml")
    ports = Ports(
        moto=free_port(), llm=free_port(), ingest=free_port(), callback=free_port(),
        qa_sync=free_port(), batch_api=free_port(), worker_metrics=free_port(),
        prometheus=free_port(),
    )  # fmt: skip
    platform = Stack(
        StackConfig(
            run_dir=tmp_path / "stack",
            ports=ports,
            llm=llm.base_url,
            llm_model=MODEL,
            llm_max_tokens=400,  # the simulator's drafts run to ~225 tokens, as a 7B's would
            prometheus_rules=(rules_file,),
            scrape_interval="1s",
            ingest_env={"QUEUE_DEPTH_INTERVAL_SECONDS": "1"},
            # One LLM failure is retried by the queue, not by the client: an error series.
            worker_env={"LLM_MAX_RETRIES": "0", "RETRY_DELAY_SECONDS": "1"},
        )
    )
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()


def _query(stack: Stack, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.prometheus_url}/api/v1/query", params={"query": promql})
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def _eventually(check: Callable[[], list[str]], timeout: float, what: str) -> None:
    """Run `check` (it returns what is still missing) until nothing is, or fail with it."""
    deadline = time.monotonic() + timeout
    missing = check()
    while missing and time.monotonic() < deadline:
        time.sleep(1)
        missing = check()
    assert not missing, f"{what}: {missing}"


def _selectors() -> set[str]:
    """Every `metric{matchers}` the rules and the dashboard select, as Prometheus gets it."""
    exprs = [*dashboard_exprs()]
    return {f"{name}{{{matchers}}}" for expr in exprs for name, matchers in SELECTOR.findall(expr)}


def _send_traffic(stack: Stack) -> None:
    SimulatedLlm(stack.llm_base_url.removesuffix("/v1")).control(fail_next=1)
    for n in range(REQUESTS):
        body = example_weekly_record(f"prometheus-{n}", member_id=100 + n)
        answer = httpx.post(
            f"{stack.ingest_url}/ai/feedback", json=body, headers=stack.ingest_headers, timeout=10
        )
        assert answer.status_code == 202


def _delivered(stack: Stack) -> list[str]:
    ids = {d["webhook_id"] for d in httpx.get(f"{stack.callback_url}/deliveries").json()}
    return [f"prometheus-{n}" for n in range(REQUESTS) if f"prometheus-{n}" not in ids]


def _poison(stack: Stack) -> None:
    assert stack.queues is not None
    sqs = boto3.client(
        "sqs",
        endpoint_url=stack.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    sqs.send_message(
        QueueUrl=stack.queues.requests,
        MessageBody="this is not a feedback request",
        MessageGroupId="poison",
        MessageDeduplicationId="poison-1",
    )


def test_rules_and_dashboard_see_real_series_and_the_dlq_alert_fires(
    stack: Stack, helm: Helm
) -> None:
    # Scraped from 0 before the traffic, so increase() counts the first deliveries too (in a
    # cluster, a worker pod's work before its first scrape is missing from the cost row).
    _eventually(lambda: _not_scraped(stack), 30, "not scraped yet")
    _send_traffic(stack)
    _eventually(lambda: _delivered(stack), 60, "not delivered")

    rules = rendered_rules(helm)
    selectors = _selectors() | {
        f"{name}{{{matchers}}}"
        for alert in alert_rules(rules)
        for name, matchers in SELECTOR.findall(alert["expr"])
    }
    expected = {s for s in selectors if s.split("{")[0] not in FIRST_EVENT_ONLY}
    _eventually(lambda: sorted(s for s in expected if not _query(stack, s)), 60, "no series for")
    qa_sync_metrics = httpx.get(f"{stack.qa_sync_url}/metrics").text
    for family in FIRST_EVENT_ONLY:
        assert f"# TYPE {family} counter" in qa_sync_metrics
    # The replica-hours sample `up` each minute: a minute's boundary must pass first.
    _eventually(lambda: _cost_missing(stack), 90, "the cost panels")

    assert _query(stack, 'ALERTS{alertname="FeedbackDeadLetterQueueNotEmpty"}') == []
    _poison(stack)
    _eventually(
        lambda: [] if _firing(stack, "FeedbackDeadLetterQueueNotEmpty") else ["not firing"],
        60,
        "FeedbackDeadLetterQueueNotEmpty",
    )


def _not_scraped(stack: Stack) -> list[str]:
    jobs = {r["metric"]["job"] for r in _query(stack, "up == 1")}
    return sorted({f"{RELEASE}-worker", f"{RELEASE}-vllm"} - jobs)


def _cost_missing(stack: Stack) -> list[str]:
    """What the cost row does not show yet: the feedbacks delivered, the replica-hours, the
    tokens of each type per feedback and the cost per 1,000, each as the stack made them."""
    shown = {}
    for panel in dashboard()["panels"]:
        if panel["type"] == "stat":
            (expr,) = panel_exprs(panel)
            shown[panel["title"]] = [float(r["value"][1]) for r in _query(stack, expr)]
    missing = []
    # increase() extrapolates a little past the first and last samples.
    if [round(value) for value in shown["Feedbacks delivered"]] != [REQUESTS]:
        missing.append(f"delivered {shown['Feedbacks delivered']}")
    for title in ("vLLM replica-hours", "Cost per 1,000 feedbacks"):
        if not (shown[title] and shown[title][0] > 0):
            missing.append(f"{title} {shown[title]}")
    if len(shown["Tokens per feedback"]) != 2 or min(shown["Tokens per feedback"]) <= 0:
        missing.append(f"tokens {shown['Tokens per feedback']}")
    return missing


def _firing(stack: Stack, alertname: str) -> bool:
    alerts = httpx.get(f"{stack.prometheus_url}/api/v1/alerts").json()["data"]["alerts"]
    return any(a["labels"]["alertname"] == alertname and a["state"] == "firing" for a in alerts)
