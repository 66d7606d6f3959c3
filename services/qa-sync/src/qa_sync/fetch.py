"""A job's QA pairs for fine-tuning: processed JSON → raw results → provider output file.

Whatever a fallback had to rebuild is uploaded again (through the reconciler's repair of that
one job), so the next fetch finds the processed JSON where it belongs.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from qa_sync.processed import chat_line, read_pairs
from qa_sync.reconcile.checks import Inspector
from qa_sync.reconcile.repair import JobReconciler
from qa_sync.registry.jobs import Registry
from qa_sync.registry.models import BatchJob, JobStatus
from qa_sync.report import Action, ObjectKind
from qa_sync.spool import Spool


class JobNotReady(Exception):
    """The job's batch has not finished at the provider yet."""


class JobPending(Exception):
    """The registry has not seen the job's batch finish: a sync should look (in the background,
    never in the caller's request thread: a sync streams up to 200 MB)."""

    def __init__(self, task_id: str, batch_id: str | None) -> None:
        super().__init__(f"{task_id} is pending")
        self.task_id = task_id
        self.batch_id = batch_id


class JobBusy(Exception):
    """Another process is repairing this job right now; ask again shortly."""


class PairsUnavailable(Exception):
    """Neither S3 nor the provider could give this job's pairs."""


class PairFormat(StrEnum):
    JSON = "json"
    """The processed JSON document as stored."""
    CHAT_JSONL = "chat-jsonl"
    """One {"messages": [system, user, assistant]} line per pair."""


class PairSource(StrEnum):
    PROCESSED = "processed"
    RAW = "raw"
    PROVIDER = "provider"


@dataclass
class FetchedPairs:
    task_id: str
    source: PairSource
    document: Spool
    """The processed JSON (the caller closes it)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.document.close()

    def body(self, pair_format: PairFormat, system_prompt: str) -> Iterator[bytes]:
        if pair_format == PairFormat.JSON:
            yield from self.document.chunks()
            return
        for pair in read_pairs(self.document.reader()):
            yield chat_line(pair, system_prompt)


class Fetcher:
    def __init__(self, registry: Registry, inspector: Inspector, jobs: JobReconciler) -> None:
        self._registry = registry
        self._inspector = inspector
        self._jobs = jobs

    def fetch(self, task_id: str) -> FetchedPairs:
        job = self._ready_job(task_id)
        check = self._inspector.check_processed(job)
        if check.content_ok:
            return FetchedPairs(task_id, PairSource.PROCESSED, check.take_body())
        check.close()
        return self._fetch_with_repair(job)

    def _ready_job(self, task_id: str) -> BatchJob:
        job = self._registry.get(task_id)
        if job.status == JobStatus.PENDING:
            raise JobPending(task_id, job.openai_batch_id)
        if not job.is_terminal:
            raise JobNotReady(f"{task_id} is {job.status}")
        return job

    def _fetch_with_repair(self, job: BatchJob) -> FetchedPairs:
        with self._registry.leased(job.batch_key_id) as leased:
            if leased is None:
                raise JobBusy(job.task_id)
            result = self._jobs.reconcile(leased, repair=True)
        try:
            processed = result.processed
            if processed is None or not processed.content_ok:
                reasons = "; ".join(item.reason for item in result.report.unrepaired)
                raise PairsUnavailable(f"{job.task_id}: {reasons or 'no pairs'}")
            report = result.report
            if report.fixed(ObjectKind.RAW, Action.REFETCHED_FROM_PROVIDER):
                source = PairSource.PROVIDER
            elif report.fixed(ObjectKind.PROCESSED, Action.REBUILT_FROM_RAW):
                source = PairSource.RAW
            else:
                source = PairSource.PROCESSED
            return FetchedPairs(job.task_id, source, processed.take_body())
        finally:
            result.close()
