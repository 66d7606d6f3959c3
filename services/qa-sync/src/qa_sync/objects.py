"""A job's two objects, built the same way wherever they are built: on completion, by the
reconciler's repairs and by fetch's fallbacks.

raw       = the provider's output file, then its error file, byte for byte (JSONL)
processed = the pairs parsed from raw (see processed.py)
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openai.types import Batch

from qa_sync.layout import PROCESSED_CONTENT_TYPE, RAW_CONTENT_TYPE, JobLayout
from qa_sync.processed import ProcessedHeader, build_processed
from qa_sync.provider import Provider
from qa_sync.qa_lines import LineStats
from qa_sync.registry.models import BatchJob, to_unix
from qa_sync.spool import Spool
from qa_sync.storage import Storage, StoredObject


def layout_of(job: BatchJob) -> JobLayout:
    return JobLayout.of(job.influencer_id, job.task_id, to_unix(job.created_at))


@dataclass(frozen=True)
class FileIds:
    output_file_id: str | None
    error_file_id: str | None


class JobObjects:
    def __init__(self, provider: Provider, storage: Storage, spool_memory_bytes: int) -> None:
        self.provider = provider
        self.storage = storage
        self._memory = spool_memory_bytes

    def new_spool(self) -> Spool:
        return Spool(self._memory)

    def fetch_raw(self, batch: Batch) -> Spool:
        """The raw results, streamed from the provider (the caller closes the spool)."""
        raw = self.new_spool()
        try:
            self.provider.copy_results(batch, raw)
        except BaseException:
            raw.close()
            raise
        return raw

    def process(
        self, job: BatchJob, raw: Spool, generated_at: datetime, files: FileIds
    ) -> tuple[Spool, LineStats]:
        header = ProcessedHeader(
            influencer_id=job.influencer_id,
            task_id=job.task_id,
            generated_at=generated_at,
            openai_batch_id=job.openai_batch_id,
            output_file_id=files.output_file_id,
            error_file_id=files.error_file_id,
            raw_key=layout_of(job).raw_key,
        )
        return build_processed(raw, header, self._memory)

    def store_raw(self, job: BatchJob, raw: Spool) -> StoredObject:
        return self.storage.put(layout_of(job).raw_key, raw, RAW_CONTENT_TYPE)

    def store_processed(self, job: BatchJob, processed: Spool) -> StoredObject:
        return self.storage.put(layout_of(job).processed_key, processed, PROCESSED_CONTENT_TYPE)


def raw_values(raw: StoredObject) -> dict[str, Any]:
    """The registry columns that say where the raw results are and what they hash to."""
    return {"raw_key": raw.key, "raw_sha256": raw.sha256, "raw_size_bytes": raw.size}


def processed_values(
    processed: StoredObject, pairs: int, stats: LineStats | None = None
) -> dict[str, Any]:
    """The same for the processed JSON, with its pair count (and line stats when rebuilt)."""
    values: dict[str, Any] = {
        "processed_key": processed.key,
        "processed_sha256": processed.sha256,
        "processed_size_bytes": processed.size,
        "total_qa_pairs": pairs,
        "generated_qa_pairs": pairs,
        "is_processed": True,
        "is_uploaded_to_s3": True,
    }
    if stats is not None:
        values["line_stats"] = stats.model_dump()
    return values
