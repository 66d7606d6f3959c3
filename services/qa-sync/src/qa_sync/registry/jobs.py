"""The queries and updates the sync, the reconciler and the API make on the registry.

A job that is being synced or repaired is leased to one process (`lease_owner`, `lease_until`):
the lease is taken with one conditional UPDATE, so two replicas, or the webhook and the poller
of one replica, never download and upload the same batch at the same time.
"""

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
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


class JobNotFound(LookupError):
    """No job with that task id (or batch id) is registered."""


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
        self, influencer_id: int, openai_batch_id: str, batch_key: str | None = None
    ) -> BatchJob:
        """A pending job for the batch; the existing one when the batch is registered already."""
        existing = self.find_by_batch(openai_batch_id)
        if existing is not None:
            return existing
        timestamp = to_unix(utcnow())
        # task_id is `qa_{influencer}_{unix ts}` and unique: two jobs in the same second for
        # one influencer take the next free second.
        while True:
            job = BatchJob(
                influencer_id=influencer_id,
                openai_batch_id=openai_batch_id,
                batch_key=batch_key,
                task_id=f"qa_{influencer_id}_{timestamp}",
                status=JobStatus.PENDING.value,
            )
            try:
                with self._sessions.begin() as session:
                    session.add(job)
                return job
            except IntegrityError:
                if (raced := self.find_by_batch(openai_batch_id)) is not None:
                    return raced
                timestamp += 1

    # --- leases ---

    @contextmanager
    def leased(self, job_id: int, *, pending_only: bool = False) -> Iterator[BatchJob | None]:
        """The job, fresh from the database, while this process holds it; None if another does
        (or, with `pending_only`, if it is no longer pending)."""
        job = self._claim(job_id, pending_only)
        try:
            yield job
        finally:
            if job is not None:
                self._release(job_id)

    def _claim(self, job_id: int, pending_only: bool) -> BatchJob | None:
        now = utcnow()
        conditions = [
            BatchJob.batch_key_id == job_id,
            or_(
                BatchJob.lease_until.is_(None),
                BatchJob.lease_until < now,
                BatchJob.lease_owner == self.owner,
            ),
        ]
        if pending_only:
            conditions.append(BatchJob.status == JobStatus.PENDING)
        with self._sessions.begin() as session:
            claimed = session.execute(
                update(BatchJob)
                .where(*conditions)
                .values(lease_owner=self.owner, lease_until=now + self._lease)
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], claimed).rowcount != 1:
                return None
            return session.get(BatchJob, job_id)

    def _release(self, job_id: int) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(BatchJob)
                .where(BatchJob.batch_key_id == job_id, BatchJob.lease_owner == self.owner)
                .values(lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )

    # --- writing ---

    def update(self, job_id: int, **values: Any) -> None:
        """Set `values` on the job in one transaction (one UPDATE statement)."""
        with self._sessions.begin() as session:
            session.execute(
                update(BatchJob)
                .where(BatchJob.batch_key_id == job_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    def increment(self, job_id: int, counter: str, **values: Any) -> None:
        """Add one to an attempt counter and set `values`, atomically."""
        column = getattr(BatchJob, counter)
        self.update(job_id, **{counter: column + 1}, **values)

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
