"""How a job looks to the API and the CLI."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from qa_sync.registry.models import BatchJob


class JobView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    task_id: str
    influencer_id: str
    openai_batch_id: str | None
    status: str
    provider_status: str | None
    request_count: int | None
    total_qa_pairs: int | None
    generated_qa_pairs: int | None
    processed_key: str | None
    processed_sha256: str | None
    raw_key: str | None
    raw_sha256: str | None
    line_stats: dict[str, Any] | None
    poll_attempts: int
    sync_attempts: int
    repair_attempts: int
    error_message: str | None
    last_error: str | None
    last_verified_at: datetime | None
    last_verification: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, job: BatchJob) -> "JobView":
        return cls.model_validate(job)
