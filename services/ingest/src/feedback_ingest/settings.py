"""The ingest service's configuration: environment variables only, validated once at start-up."""

from typing import Annotated, Any, Self

from llm_common.api_keys import split_keys
from llm_common.settings import ServiceSettings
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode


class IngestSettings(ServiceSettings):
    feedback_queue_url: str = Field(min_length=1)
    """`FEEDBACK_QUEUE_URL`: the SQS FIFO queue the accepted requests go to."""

    ingest_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """`INGEST_API_KEYS`: comma-separated; two are valid at once while a key is rotated. Empty:
    `/ai/feedback` is closed (503) until it is set (llm_common/api_keys.py)."""

    max_body_bytes: int = Field(default=262_144, gt=0)
    """`MAX_BODY_BYTES`: a larger request body is refused with 413 while it streams, before it
    is read whole."""
    queue_retry_after_seconds: int = Field(default=5, ge=1)
    """`QUEUE_RETRY_AFTER_SECONDS`: the Retry-After of the 503 answered when SQS refuses or cannot
    take a request."""
    queue_depth_interval_seconds: float = Field(default=15, ge=0)
    """`QUEUE_DEPTH_INTERVAL_SECONDS`: how often the request queue's and its DLQ's depth is read
    for `/metrics` (queue_depth.py); 0 turns it off."""

    request_table_name: str = ""
    """`REQUEST_TABLE_NAME`: the request store's DynamoDB table (llm_common/requests_store.py).
    Empty: no store, so no status lookup, idempotency only within SQS's 5-minute window, no
    record of a stored result, and a chosen request id must begin with `{memberId}-`
    (feedback_ingest/jobs.py)."""

    request_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    """`REQUEST_TTL_SECONDS`: a request's deadline when it carries none (a week: weekly feedback
    is worthless after the next one)."""

    request_store_ttl_seconds: int = Field(default=35 * 24 * 3600, gt=0)
    """`REQUEST_STORE_TTL_SECONDS`: how long DynamoDB keeps a record (its TTL attribute)."""

    host: str = "0.0.0.0"
    """`HOST`: the address the HTTP server binds."""
    port: int = Field(default=8080, ge=1, le=65_535)
    """`PORT`: the HTTP port of the API, its probes and `/metrics`."""

    @model_validator(mode="after")
    def _records_outlive_deadlines(self) -> Self:
        # A record that expires before its request's deadline would let a late retry of a
        # request still being worked become a second job.
        if self.request_store_ttl_seconds < self.request_ttl_seconds:
            raise ValueError(
                "REQUEST_STORE_TTL_SECONDS must not be below REQUEST_TTL_SECONDS: a record must "
                "outlive its request's deadline"
            )
        return self

    @field_validator("ingest_api_keys", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: Any) -> Any:
        return split_keys(value)
