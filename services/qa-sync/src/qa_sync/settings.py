"""qa-sync's configuration: environment variables only, validated once at start-up."""

from typing import Annotated, Any

from llm_common.api_keys import split_keys
from llm_common.settings import ServiceSettings
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

MIB = 1024 * 1024
# S3 refuses multipart parts smaller than 5 MiB (all but the last), so neither the threshold nor
# the part size may go below it.
S3_MIN_PART_BYTES = 5 * MIB


class QaSyncSettings(ServiceSettings):
    database_url: str = Field(default="sqlite:///./.run/qa-sync.db", min_length=1)
    """`DATABASE_URL`: SQLAlchemy URL of the registry (sqlite:///... or postgresql+psycopg://...)."""

    qa_bucket: str = Field(min_length=3)
    """`QA_BUCKET`: the S3 bucket that holds processed and raw QA objects."""

    openai_base_url: str = "https://api.openai.com/v1"
    """`OPENAI_BASE_URL`: any OpenAI-compatible Batch/Files API."""

    openai_api_key: SecretStr | None = None
    """`OPENAI_API_KEY`: optional, for servers that need no key."""

    openai_webhook_secret: SecretStr | None = None
    """`OPENAI_WEBHOOK_SECRET`: `whsec_...`; without it the webhook answers 503 and polling alone
    notices completed batches."""

    webhook_max_body_bytes: int = Field(default=64 * 1024, gt=0)
    """`WEBHOOK_MAX_BODY_BYTES`: a larger webhook body is refused (413) while it streams, before
    it is read whole. OpenAI's batch events name only the batch: about 300 bytes."""

    qa_sync_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """`QA_SYNC_API_KEYS`: comma-separated keys the job and QA-pair APIs accept (`X-API-Key` or
    `Authorization: Bearer`); two at once while a key is rotated. Without any, those APIs
    answer 503: they return an influencer's data and are never open."""

    openai_max_retries: int = Field(default=2, ge=0)
    """The openai client's own retries of a Batch or Files API call."""
    openai_timeout_seconds: float = Field(default=120.0, gt=0)
    """Timeout of one Batch or Files API call (an output file streams within it)."""

    poll_interval_seconds: float = Field(default=60.0, gt=0)
    """How often unfinished batch jobs are polled, for completions no webhook announced."""
    reconcile_interval_seconds: float = Field(default=3600.0, gt=0)
    """How often every synced job's S3 objects are checked and repaired."""
    lease_seconds: int = Field(default=900, gt=0)
    """How long one process may hold a job while it syncs or repairs it; after a crash another
    process takes the job over once the lease has run out."""

    migrate_on_start: bool = True
    """Apply the registry's Alembic migrations at start-up (off where a release job does it)."""

    s3_multipart_threshold_bytes: int = Field(default=64 * MIB, ge=S3_MIN_PART_BYTES)
    """Objects larger than this are uploaded in parts (S3's smallest part is 5 MiB)."""
    s3_part_bytes: int = Field(default=8 * MIB, ge=S3_MIN_PART_BYTES)
    """The size of one multipart part."""
    s3_max_attempts: int = Field(default=5, ge=1)
    """Attempts of one S3 call before it counts as failed."""
    s3_retry_base_seconds: float = Field(default=0.5, ge=0)
    """First wait between S3 attempts; doubles per attempt."""
    spool_memory_bytes: int = Field(default=8 * MIB, ge=0)
    """How much of one object is held in memory before it spills to a temporary file."""

    finetune_system_prompt: str = "너는 인플루언서의 질문에 답하는 어시스턴트야."
    """System message of the chat-format JSONL that `fetch` produces for fine-tuning."""

    host: str = "0.0.0.0"
    """`HOST`: the address the HTTP server binds."""
    port: int = Field(default=8090, ge=1, le=65_535)
    """`PORT`: the HTTP port of the API, the webhook, the probes and `/metrics`."""

    @field_validator("qa_sync_api_keys", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: Any) -> Any:
        return split_keys(value)

    @field_validator("openai_webhook_secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("whsec_"):
            raise ValueError("must be the whsec_... secret OpenAI shows for the webhook endpoint")
        return value
