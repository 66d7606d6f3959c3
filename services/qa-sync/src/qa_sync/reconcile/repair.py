"""Check one job's objects and, when asked, repair them:

raw        missing or corrupt        → fetched again from the provider
           at a legacy key           → moved to the standard key
processed  missing, corrupt, broken  → rebuilt from raw
           at a legacy key           → moved to the standard key
either     without content type or sha256 metadata → written again with both
           fine but not recorded     → its exact key, checksum and count recorded

Everything learnt is written in one transaction; legacy objects are deleted only after the
registry points at their copies, so a crash leaves a duplicate, never a loss.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from llm_common.telemetry import names

from qa_sync.objects import FileIds, JobObjects, processed_values, raw_values
from qa_sync.provider import ProviderRefused, ProviderUnavailable
from qa_sync.reconcile.checks import Inspector, ObjectCheck
from qa_sync.registry.jobs import Attempt, Registry
from qa_sync.registry.models import BatchJob, utcnow
from qa_sync.report import Action, Finding, Fix, JobReport, Problem, Unrepaired
from qa_sync.spool import Spool
from qa_sync.storage import StorageError, StoredObject
from qa_sync.telemetry import count_findings, count_repairs, job_span

log = logging.getLogger(__name__)


class NothingToFetch(Exception):
    """The job has no batch id, so the provider cannot give its results again."""


@dataclass
class Reconciled:
    """One job's report, and its checked objects (the caller closes them)."""

    report: JobReport
    raw: ObjectCheck | None
    processed: ObjectCheck | None

    def close(self) -> None:
        for check in (self.raw, self.processed):
            if check is not None:
                check.close()


class JobReconciler:
    def __init__(self, registry: Registry, objects: JobObjects, inspector: Inspector) -> None:
        self._registry = registry
        self._objects = objects
        self._inspector = inspector

    def reconcile(self, job: BatchJob, repair: bool) -> Reconciled:
        """Check a job this process holds the lease of; with `repair`, fix what is wrong."""
        result = Reconciled(JobReport(task_id=job.task_id), None, None)
        try:
            with job_span(names.QA_SYNC_VERIFY_SPAN, job.task_id, job.openai_batch_id):
                result.raw = self._inspector.check_raw(job)
                result.processed = self._inspector.check_processed(job)
        except StorageError as error:
            result.report.unrepaired.append(
                Unrepaired(task_id=job.task_id, object=None, reason=f"cannot read: {error}")
            )
            self._record(job, result.report, {})
            return result
        report = result.report
        report.objects_checked = 2
        report.findings = result.raw.findings(job.task_id) + result.processed.findings(job.task_id)
        count_findings(report)
        if not (repair and report.findings):
            self._record(job, report, {})
            return result
        repairs = _JobRepair(self._objects, job, report)
        with job_span(names.QA_SYNC_REPAIR_SPAN, job.task_id, job.openai_batch_id):
            repairs.run(result.raw, result.processed)
        count_repairs(report)
        self._record(job, report, repairs.values, Attempt.REPAIR)
        repairs.delete_moved()
        return result

    def _record(
        self,
        job: BatchJob,
        report: JobReport,
        values: dict[str, Any],
        attempt: Attempt | None = None,
    ) -> None:
        problems = report.unrepaired or ([] if report.fixes else report.findings)
        self._registry.update(
            job.batch_key_id,
            attempt,
            **values,
            last_verified_at=utcnow(),
            last_verification=report.verification.value,
            last_error="; ".join(_describe(item) for item in problems) or None,
        )


def _describe(item: Unrepaired | Finding) -> str:
    if isinstance(item, Unrepaired):
        return f"{item.object or 'job'}: {item.reason}"
    return f"{item.object} {item.problem}"


class _JobRepair:
    """The repairs of one job: what to record, and which legacy objects to delete after."""

    def __init__(self, objects: JobObjects, job: BatchJob, report: JobReport) -> None:
        self._objects = objects
        self._job = job
        self._report = report
        self.values: dict[str, Any] = {}
        """The registry columns to set, in one transaction with the verification result."""
        self._moved: list[str] = []

    def run(self, raw: ObjectCheck, processed: ObjectCheck) -> None:
        if raw.problems:
            self._attempt(raw, partial(self._repair_raw, raw))
        if not processed.problems:
            return
        if not processed.content_ok and not raw.content_ok:
            self._unrepaired(processed, "no raw results to rebuild it from")
        else:
            self._attempt(processed, partial(self._repair_processed, processed, raw))

    def _attempt(self, check: ObjectCheck, repair: Callable[[], None]) -> None:
        try:
            repair()
        except (StorageError, ProviderUnavailable, ProviderRefused, NothingToFetch) as error:
            self._unrepaired(check, str(error))

    def _repair_raw(self, raw: ObjectCheck) -> None:
        if not raw.content_ok:
            body = self._refetch_raw()
            self._replaced(
                raw, body, self._objects.store_raw(self._job, body), Action.REFETCHED_FROM_PROVIDER
            )
        elif raw.at_legacy_key:
            self._move(raw, self._objects.store_raw)
        elif raw.headers_incomplete:
            self._rewrite(raw, self._objects.store_raw)
        else:
            self._fixed(raw, Action.RECORDED)
        self.values |= raw_values(self._stored(raw))

    def _repair_processed(self, processed: ObjectCheck, raw: ObjectCheck) -> None:
        if not processed.content_ok:
            assert raw.body is not None
            body, stats = self._objects.process(
                self._job, raw.body, self._generated_at(), self._files()
            )
            stored = self._objects.store_processed(self._job, body)
            self._replaced(processed, body, stored, Action.REBUILT_FROM_RAW)
            self.values |= processed_values(stored, stats.pairs, stats)
        else:
            assert processed.pairs is not None
            if processed.at_legacy_key:
                self._move(processed, self._objects.store_processed)
            elif processed.headers_incomplete:
                self._rewrite(processed, self._objects.store_processed)
            else:
                self._fixed(processed, Action.RECORDED)
            self.values |= processed_values(self._stored(processed), processed.pairs)

    def _refetch_raw(self) -> Spool:
        if not self._job.openai_batch_id:
            raise NothingToFetch("no batch id to fetch the results from")
        batch = self._objects.provider.retrieve_batch(self._job.openai_batch_id)
        self.values |= {
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
        }
        return self._objects.fetch_raw(batch)

    def _move(self, check: ObjectCheck, store: Callable[[BatchJob, Spool], StoredObject]) -> None:
        assert check.body is not None
        assert check.key is not None
        legacy_key = check.key
        stored = store(self._job, check.body)
        check.replace_body(check.body, stored.key)
        self._moved.append(legacy_key)
        self._fixed(check, Action.MOVED_FROM_LEGACY_KEY, from_key=legacy_key)

    def _rewrite(
        self, check: ObjectCheck, store: Callable[[BatchJob, Spool], StoredObject]
    ) -> None:
        """The same bytes at the same (standard) key, now with content type and sha256."""
        assert check.body is not None
        store(self._job, check.body)
        check.problems.pop(Problem.INCOMPLETE_HEADERS)
        self._fixed(check, Action.HEADERS_REWRITTEN)

    def _replaced(
        self, check: ObjectCheck, body: Spool, stored: StoredObject, action: Action
    ) -> None:
        check.replace_body(body, stored.key)
        self._fixed(check, action)

    def _generated_at(self) -> datetime:
        # Old rows may lack completed_at; fix one now so later rebuilds give the same bytes.
        if self._job.completed_at is not None:
            return self._job.completed_at
        generated_at: datetime = self.values.setdefault(
            "completed_at", utcnow().replace(microsecond=0)
        )
        return generated_at

    def _files(self) -> FileIds:
        return FileIds(
            self.values.get("output_file_id", self._job.output_file_id),
            self.values.get("error_file_id", self._job.error_file_id),
        )

    @staticmethod
    def _stored(check: ObjectCheck) -> StoredObject:
        assert check.body is not None
        assert check.key is not None
        return StoredObject(key=check.key, sha256=check.body.sha256, size=check.body.size)

    def _fixed(self, check: ObjectCheck, action: Action, from_key: str | None = None) -> None:
        assert check.key is not None
        check.problems.pop(Problem.UNRECORDED, None)
        self._report.fixes.append(
            Fix(
                task_id=self._job.task_id,
                object=check.kind,
                action=action,
                key=check.key,
                from_key=from_key,
            )
        )

    def _unrepaired(self, check: ObjectCheck, reason: str) -> None:
        self._report.unrepaired.append(
            Unrepaired(task_id=self._job.task_id, object=check.kind, reason=reason)
        )

    def delete_moved(self) -> None:
        for key in self._moved:
            try:
                self._objects.storage.delete(key)
            except StorageError:
                # The registry points at the copy already; the next run finds nothing to do.
                log.warning("moved %s but could not delete it", key)
