"""qa-sync's spans and metrics, under the names docs/observability.md promises."""

from collections.abc import Iterator
from contextlib import contextmanager

from llm_common.telemetry import metrics, names
from opentelemetry import trace

from qa_sync.registry.models import JobStatus
from qa_sync.report import JobReport

_tracer = trace.get_tracer("qa_sync")


@contextmanager
def job_span(name: str, task_id: str, batch_id: str | None) -> Iterator[trace.Span]:
    """`qa_sync.job`, `qa_sync.verify` or `qa_sync.repair` for one job."""
    attributes = {names.QA_TASK_ID_ATTRIBUTE: task_id}
    if batch_id:
        attributes[names.QA_BATCH_ID_ATTRIBUTE] = batch_id
    with _tracer.start_as_current_span(name, attributes=attributes) as span:
        yield span


def count_findings(report: JobReport) -> None:
    for finding in report.findings:
        metrics.QA_SYNC_VERIFICATION_FAILURES.labels(finding.object, finding.problem).inc()


def count_repairs(report: JobReport) -> None:
    for fix in report.fixes:
        metrics.QA_SYNC_REPAIRS.labels(fix.object, fix.action).inc()
    if report.unrepaired:
        metrics.QA_SYNC_REPAIR_FAILURES.inc(len(report.unrepaired))


def set_job_counts(counts: dict[str, int]) -> None:
    """The `qa_sync_jobs` gauge from the registry's counts (every status, 0 when none)."""
    for status in JobStatus:
        metrics.QA_SYNC_JOBS.labels(status.value).set(counts.get(status.value, 0))
