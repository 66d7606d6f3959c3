"""ORM models of the registry, compatible with the `BATCH_KEY` table the old system created.

Two legacy columns are named the wrong way round: `s3_qa_file_url` holds the PROCESSED QA JSON
and `s3_processed_file_url` holds the RAW JSONL. The columns keep their names (other readers of
the table use them); the attributes here are named for what they hold: `processed_key` and
`raw_key`. Both store exact S3 keys, never URLs.

Times are naive UTC, as the old table stored them.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_ID = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Now, in UTC, without a zone (the registry's convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def to_unix(naive_utc: datetime) -> int:
    return int(naive_utc.replace(tzinfo=UTC).timestamp())


class JobStatus(StrEnum):
    """Where a job is. Every state but PENDING is terminal and has its objects in S3."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset(status.value for status in JobStatus) - {JobStatus.PENDING.value}


class Verification(StrEnum):
    OK = "ok"
    REPAIRED = "repaired"
    DAMAGED = "damaged"
    """Problems found and not (or not yet) repaired; `last_error` says which."""


class Base(DeclarativeBase):
    pass


class BatchJob(Base):
    """One OpenAI batch that generates QA pairs for one influencer."""

    __tablename__ = "batch_key"
    # PostgreSQL folds the old unquoted BATCH_KEY to batch_key; this is that table.

    # --- the old table's columns ---
    batch_key_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    influencer_id: Mapped[str] = mapped_column(String(255), index=True)
    """A string: the real system's influencer ids are UUIDs (migration 0003 converts integers)."""
    batch_key: Mapped[str | None] = mapped_column(String(255))
    task_id: Mapped[str] = mapped_column(String(255), unique=True)
    openai_batch_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    total_qa_pairs: Mapped[int | None] = mapped_column(Integer)
    """Pairs in the processed JSON: the same number as the JSON's own `total_qa_pairs` (it held
    the batch's request count before migration 0004, which moved that to `request_count`)."""
    generated_qa_pairs: Mapped[int | None] = mapped_column(Integer)
    """Pairs in the processed JSON (the old system's name for it; kept for its readers)."""
    input_file_id: Mapped[str | None] = mapped_column(String(255))
    output_file_id: Mapped[str | None] = mapped_column(String(255))
    error_message: Mapped[str | None] = mapped_column(Text)
    """The batch's own errors as the provider reported them (not the sync's: see `last_error`)."""
    vllm_task_id: Mapped[str | None] = mapped_column(String(255))
    processed_key: Mapped[str | None] = mapped_column("s3_qa_file_url", String(1024))
    raw_key: Mapped[str | None] = mapped_column("s3_processed_file_url", String(1024))
    is_processed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    is_uploaded_to_s3: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    is_finetuning_started: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    """When the batch reached its terminal state at the provider; the processed JSON's
    `generated_at`, so that rebuilding it gives the same bytes."""

    # --- what the sync adds ---
    error_file_id: Mapped[str | None] = mapped_column(String(255))
    request_count: Mapped[int | None] = mapped_column(Integer)
    """Requests in the batch (one QA pair asked for per request), as the provider counts them."""
    provider_status: Mapped[str | None] = mapped_column(String(32))
    processed_sha256: Mapped[str | None] = mapped_column(String(64))
    processed_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    raw_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    line_stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    poll_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sync_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    repair_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_verified_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_verification: Mapped[str | None] = mapped_column(String(32))
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)

    @property
    def is_terminal(self) -> bool:
        return self.status.lower() in TERMINAL_STATUSES


class WebhookEvent(Base):
    """A webhook delivery already taken: its `webhook-id` is the idempotency key."""

    __tablename__ = "qa_sync_webhook_event"

    webhook_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    openai_batch_id: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
