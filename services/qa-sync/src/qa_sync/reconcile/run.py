"""Verify every terminal job's objects, and (unless only verifying) repair what is wrong."""

import logging

from qa_sync.reconcile.repair import JobReconciler
from qa_sync.registry.jobs import Registry
from qa_sync.registry.models import BatchJob, utcnow
from qa_sync.report import JobReport, ReconcileReport, Unrepaired

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, registry: Registry, jobs: JobReconciler) -> None:
        self._registry = registry
        self._jobs = jobs

    def run(self, repair: bool) -> ReconcileReport:
        report = ReconcileReport(repair=repair, started_at=utcnow())
        for job in self._registry.terminal():
            with self._registry.leased(job.batch_key_id) as leased:
                if leased is None:
                    report.jobs_busy.append(job.task_id)
                    continue
                report.add(self._reconcile_job(leased, repair))
        report.finished_at = utcnow()
        log.info(
            "reconcile: %d jobs, %d ok, %d findings, %d fixes, %d unrepaired",
            report.jobs_checked,
            report.jobs_ok,
            len(report.findings),
            len(report.fixes),
            len(report.unrepaired),
        )
        return report

    def _reconcile_job(self, job: BatchJob, repair: bool) -> JobReport:
        try:
            result = self._jobs.reconcile(job, repair)
        except Exception as error:
            # One job's surprise must not stop the others being checked; the report shows it.
            log.exception("reconcile %s failed", job.task_id)
            report = JobReport(task_id=job.task_id)
            report.unrepaired.append(
                Unrepaired(task_id=job.task_id, object=None, reason=f"unexpected: {error!r}")
            )
            return report
        result.close()
        return result.report
