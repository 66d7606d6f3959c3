"""The queries and updates the sync, the reconciler and the API make on the registry.

A job that is being synced or repaired is leased to one holder (`lease_owner`, `lease_until`):
the lease is taken with one conditional UPDATE that only succeeds on a free or expired lease, so
two replicas, or two threads of one replica (the fetch API's pool and the reconciler), never
download and upload the same batch at the same time. Each claim writes its own token into
`lease_owner`; only that token renews or releases it. While the work runs, a thread renews the
lease every third of its duration, so a 200 MB output that takes longer than `lease_seconds` to
stream keeps its lease, and a crashed holder's lease runs out within `lease_seconds`.
"""

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from qa_sync.registry.models import (
    TERMINAL_STATUSES,
    BatchJob,
    JobStatus,
    WebhookEvent,
    to_unix,
    utcnow,
)

log = logging.getLogger(__name__)


class JobNotFound(LookupError):
    """No job with that task id (or batch id) is registered."""


class Attempt(StrEnum):
    """What a job's attempt counters count."""

    POLL = "poll"
    """Asking the provider whether the batch has finished."""
    SYNC = "sync"
    """Storing a finished batch's results."""
    REPAIR = "repair"
    """Repairing its objects."""


_ATTEMPT_COUNTERS = {
    Attempt.POLL: BatchJob.poll_attempts,
    Attempt.SYNC: BatchJob.sync_attempts,
    Attempt.REPAIR: BatchJob.repair_attempts,
}


class TaskIdTaken(Exception):
    """Another job holds that task id (or the batch is registered under another one)."""


def new_lease_owner() -> str:
    """Who holds a lease: host and pid for the operator, a random part so restarts differ."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Registry:
    def __init__(self, sessions: sessionmaker[Session], lease_seconds: int) -> None:
        self._sessions = sessions
        self._lease = timedelta(seconds=lease_seconds)
        self.owner = new_lease_owner()

    # --- reading ---

    def get(self, task_id: str) -> BatchJob:
        with self._sessions() as session:
            job = session.scalar(select(BatchJob).where(BatchJob.task_id == task_id))
        if job is None:
            raise JobNotFound(task_id)
        return job

    def find_by_batch(self, openai_batch_id: str) -> BatchJob | None:
        with self._sessions() as session:
            return session.scalar(
                select(BatchJob).where(BatchJob.openai_batch_id == openai_batch_id)
            )

    def pending(self) -> list[BatchJob]:
        """Jobs whose batch has not been seen in a terminal state yet."""
        query = (
            select(BatchJob)
            .where(BatchJob.status == JobStatus.PENDING, BatchJob.openai_batch_id.is_not(None))
            .order_by(BatchJob.batch_key_id)
        )
        with self._sessions() as session:
            return list(session.scalars(query))

    def terminal(self) -> list[BatchJob]:
        """Jobs that should have their objects in S3 (old rows may spell statuses in capitals)."""
        query = (
            select(BatchJob)
            .where(func.lower(BatchJob.status).in_(TERMINAL_STATUSES))
            .order_by(BatchJob.batch_key_id)
        )
        with self._sessions() as session:
            return list(session.scalars(query))

    def count_by_status(self) -> dict[str, int]:
        status = func.lower(BatchJob.status)
        query = select(status, func.count()).group_by(status)
        with self._sessions() as session:
            return {str(name): int(count) for name, count in session.execute(query)}

    # --- registering ---

    def register(
        self,
        influencer_id: str,
        openai_batch_id: str,
        batch_key: str | None = None,
        task_id: str | None = None,
    ) -> BatchJob:
        """A pending job for the batch; the existing one when the batch is registered already.

        `task_id` adopts a batch that exists at the provider (and perhaps in the bucket) under
        that task id but not in the registry: the job takes that id instead of a new one, so
        its objects land under, and are found at, that task's keys.
        """
        existing = self.find_by_batch(openai_batch_id)
        if existing is not None:
            if task_id is not None and existing.task_id != task_id:
                raise TaskIdTaken(f"batch {openai_batch_id} is registered as {existing.task_id}")
            return existing
        if task_id is not None:
            return self._insert(influencer_id, openai_batch_id, batch_key, task_id)
        timestamp = to_unix(utcnow())
        # task_id is `qa_{influencer}_{unix ts}` and unique: two jobs in the same second for
        # one influencer take the next free second.
        while True:
            try:
                return self._insert(
                    influencer_id, openai_batch_id, batch_key, f"qa_{influencer_id}_{timestamp}"
                )
            except TaskIdTaken:
                if (raced := self.find_by_batch(openai_batch_id)) is not None:
                    return raced
                timestamp += 1

    def _insert(
        self, influencer_id: str, openai_batch_id: str, batch_key: str | None, task_id: str
    ) -> BatchJob:
        job = BatchJob(
            influencer_id=influencer_id,
            openai_batch_id=openai_batch_id,
            batch_key=batch_key,
            task_id=task_id,
            status=JobStatus.PENDING.value,
        )
        try:
            with self._sessions.begin() as session:
                session.add(job)
        except IntegrityError as error:
            if (raced := self.find_by_batch(openai_batch_id)) is not None and (
                raced.task_id == task_id
            ):
                return raced
            raise TaskIdTaken(f"task id {task_id} is taken") from error
        return job

    # --- leases ---

    @contextmanager
    def leased(self, job_id: int, *, pending_only: bool = False) -> Iterator[BatchJob | None]:
        """The job, fresh from the database, while this holder has its lease; None if anyone
        else (another process or another thread of this one) holds it, or, with
        `pending_only`, if it is no longer pending."""
        token = f"{self.owner}:{uuid.uuid4().hex[:8]}"
        job = self._claim(job_id, token, pending_only)
        if job is None:
            yield None
            return
        renewal = _Renewal(self, job_id, token)
        renewal.start()
        try:
            yield job
        finally:
            renewal.stop()
            self._release(job_id, token)

    def _claim(self, job_id: int, token: str, pending_only: bool) -> BatchJob | None:
        now = utcnow()
        conditions = [
            BatchJob.batch_key_id == job_id,
            or_(BatchJob.lease_until.is_(None), BatchJob.lease_until < now),
        ]
        if pending_only:
            conditions.append(BatchJob.status == JobStatus.PENDING)
        with self._sessions.begin() as session:
            claimed = session.execute(
                update(BatchJob)
                .where(*conditions)
                .values(lease_owner=token, lease_until=now + self._lease)
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], claimed).rowcount != 1:
                return None
            return session.get(BatchJob, job_id)

    def renew(self, job_id: int, token: str) -> bool:
        """Push the lease's end out again; False once `token` no longer holds it."""
        with self._sessions.begin() as session:
            renewed = session.execute(
                update(BatchJob)
                .where(BatchJob.batch_key_id == job_id, BatchJob.lease_owner == token)
                .values(lease_until=utcnow() + self._lease)
                .execution_options(synchronize_session=False)
            )
            return cast(CursorResult[Any], renewed).rowcount == 1

    def _release(self, job_id: int, token: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(BatchJob)
                .where(BatchJob.batch_key_id == job_id, BatchJob.lease_owner == token)
                .values(lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )

    @property
    def lease_seconds(self) -> float:
        return self._lease.total_seconds()

    # --- writing ---

    def update(self, job_id: int, attempt: Attempt | None = None, **values: Any) -> None:
        """Set `values` (BatchJob's attributes) on the job and, with `attempt`, add one to that
        attempt counter: one UPDATE statement, so the count and the outcome land together."""
        statement = update(BatchJob).where(BatchJob.batch_key_id == job_id).values(**values)
        if attempt is not None:
            counter = _ATTEMPT_COUNTERS[attempt]
            statement = statement.values({counter: counter + 1})
        with self._sessions.begin() as session:
            session.execute(statement.execution_options(synchronize_session=False))

    def record_webhook(self, webhook_id: str, event_type: str, openai_batch_id: str | None) -> bool:
        """True the first time this webhook id is seen, False for a redelivery."""
        try:
            with self._sessions.begin() as session:
                session.add(
                    WebhookEvent(
                        webhook_id=webhook_id,
                        event_type=event_type,
                        openai_batch_id=openai_batch_id,
                    )
                )
        except IntegrityError:
            return False
        return True

    def ping(self) -> None:
        with self._sessions() as session:
            session.execute(select(1))


class _Renewal(threading.Thread):
    """Renews one lease every third of its duration until stopped: two renewals may fail (a
    database hiccup) before the lease can run out under the work."""

    def __init__(self, registry: Registry, job_id: int, token: str) -> None:
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self._registry = registry
        self._job_id = job_id
        self._token = token
        self._stopped = threading.Event()

    def run(self) -> None:
        interval = self._registry.lease_seconds / 3
        while not self._stopped.wait(interval):
            try:
                if not self._registry.renew(self._job_id, self._token):
                    return  # taken over after all: nothing left to renew
            except Exception:
                log.warning("could not renew the lease of job %s", self._job_id, exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
        self.join()
