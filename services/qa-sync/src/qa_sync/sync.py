"""Completion: when a job's batch has reached a terminal state at the provider, stream its
results into S3 and record keys, checksums and the terminal state in one transaction.

Completed, failed, expired and cancelled batches all end here, with whatever output they have.
A job that is no longer pending is left alone, so syncing a job twice changes nothing.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from llm_common.telemetry import names
from openai.types import Batch

from qa_sync.objects import FileIds, JobObjects, processed_values, raw_values
from qa_sync.provider import TERMINAL_BATCH_STATUSES, ProviderRefused, ProviderUnavailable
from qa_sync.registry.jobs import Attempt, Registry
from qa_sync.registry.models import BatchJob, JobStatus, from_unix, utcnow
from qa_sync.storage import StorageError
from qa_sync.telemetry import job_span

log = logging.getLogger(__name__)


class SyncOutcome(StrEnum):
    SYNCED = "synced"
    WAITING = "waiting"
    """The batch is still running at the provider."""
    ALREADY_SYNCED = "already_synced"
    BUSY = "busy"
    """Another process (or thread) is syncing this job right now."""
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_REFUSED = "provider_refused"
    STORAGE_FAILED = "storage_failed"


@dataclass(frozen=True)
class SyncResult:
    task_id: str
    outcome: SyncOutcome
    detail: str | None = None


class Syncer:
    def __init__(self, registry: Registry, objects: JobObjects) -> None:
        self._registry = registry
        self._objects = objects

    def sync_pending(self) -> list[SyncResult]:
        return [self.sync(job) for job in self._registry.pending()]

    def sync(self, job: BatchJob) -> SyncResult:
        with (
            job_span(names.QA_SYNC_JOB_SPAN, job.task_id, job.openai_batch_id),
            self._registry.leased(job.batch_key_id, pending_only=True) as leased,
        ):
            if leased is None:
                current = self._registry.get(job.task_id)
                done = current.status != JobStatus.PENDING
                return SyncResult(
                    job.task_id, SyncOutcome.ALREADY_SYNCED if done else SyncOutcome.BUSY
                )
            result = self._sync_leased(leased)
        log.info("sync %s: %s %s", result.task_id, result.outcome, result.detail or "")
        return result

    def _sync_leased(self, job: BatchJob) -> SyncResult:
        assert job.openai_batch_id is not None, "pending() only returns jobs with a batch id"
        try:
            batch = self._objects.provider.retrieve_batch(job.openai_batch_id)
        except ProviderUnavailable as error:
            return self._attempt_failed(job, Attempt.POLL, SyncOutcome.PROVIDER_UNAVAILABLE, error)
        except ProviderRefused as error:
            return self._attempt_failed(job, Attempt.POLL, SyncOutcome.PROVIDER_REFUSED, error)
        if batch.status not in TERMINAL_BATCH_STATUSES:
            self._registry.update(
                job.batch_key_id, Attempt.POLL, provider_status=batch.status, last_error=None
            )
            return SyncResult(job.task_id, SyncOutcome.WAITING, batch.status)
        return self._store_results(job, batch)

    def _store_results(self, job: BatchJob, batch: Batch) -> SyncResult:
        generated_at = terminal_time(batch)
        files = FileIds(batch.output_file_id, batch.error_file_id)
        try:
            with self._objects.fetch_raw(batch) as raw:
                processed, stats = self._objects.process(job, raw, generated_at, files)
                with processed:
                    raw_object = self._objects.store_raw(job, raw)
                    processed_object = self._objects.store_processed(job, processed)
        except ProviderUnavailable as error:
            return self._attempt_failed(job, Attempt.SYNC, SyncOutcome.PROVIDER_UNAVAILABLE, error)
        except ProviderRefused as error:
            return self._attempt_failed(job, Attempt.SYNC, SyncOutcome.PROVIDER_REFUSED, error)
        except StorageError as error:
            return self._attempt_failed(job, Attempt.SYNC, SyncOutcome.STORAGE_FAILED, error)
        self._registry.update(
            job.batch_key_id,
            Attempt.SYNC,
            **terminal_values(batch, generated_at),
            **raw_values(raw_object),
            **processed_values(processed_object, stats.pairs, stats),
        )
        return SyncResult(job.task_id, SyncOutcome.SYNCED, f"{stats.pairs} pairs")

    def _attempt_failed(
        self, job: BatchJob, attempt: Attempt, outcome: SyncOutcome, error: Exception
    ) -> SyncResult:
        # The job stays pending: the next poll tries again.
        self._registry.update(job.batch_key_id, attempt, last_error=str(error))
        return SyncResult(job.task_id, outcome, str(error))


def terminal_time(batch: Batch) -> datetime:
    """When the batch reached its terminal state (whole seconds, as the provider reports it)."""
    stamps = (batch.completed_at, batch.failed_at, batch.expired_at, batch.cancelled_at)
    seconds = next((stamp for stamp in stamps if stamp), None)
    return from_unix(seconds) if seconds else utcnow().replace(microsecond=0)


def terminal_values(batch: Batch, generated_at: datetime) -> dict[str, Any]:
    counts = batch.request_counts
    errors = batch.errors.data if batch.errors and batch.errors.data else []
    return {
        "status": JobStatus(batch.status).value,
        "provider_status": batch.status,
        "input_file_id": batch.input_file_id,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "request_count": counts.total if counts else None,
        "error_message": "; ".join(f"{e.code}: {e.message}" for e in errors) or None,
        "completed_at": generated_at,
        "last_error": None,
    }
