"""Where a job's objects live in the bucket: the standard layout and the legacy keys to migrate.

Standard (docs/qa-sync.md, S3 layout):
  influencers/{influencer_id}/qa_pairs/{task_id}/processed_qa_{ts}.json      processed QA JSON
  influencers/{influencer_id}/qa_results/{task_id}/generated_qa_results.jsonl raw results
`ts` is the unix timestamp at the end of `task_id` (`qa_{influencer_id}_{ts}`), so both keys are
derivable from the job alone.

Legacy keys that exist in real buckets:
  influencers/{influencer_id}/qa_pairs/{task_id}/processed_qa_{YYYYmmdd_HHMMSS}.json
  influencers/{influencer_id}/qa_pairs/{task_id}/raw_results_{YYYYmmdd_HHMMSS}.jsonl
  qa_pairs/processed_qa_{task_id}.json   (bucket root)
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

PROCESSED_CONTENT_TYPE = "application/json"
RAW_CONTENT_TYPE = "application/x-ndjson"

_TASK_TIMESTAMP = re.compile(r"_(\d+)$")
_LEGACY_PROCESSED = re.compile(r"/processed_qa_(\d{8}_\d{6})\.json$")
_LEGACY_RAW = re.compile(r"/raw_results_(\d{8}_\d{6})\.jsonl$")


@dataclass(frozen=True)
class JobLayout:
    influencer_id: str
    task_id: str
    timestamp: int
    """The unix timestamp in the processed key: the end of `task_id` (or, for an old task id
    without one, the job's creation time)."""

    @classmethod
    def of(cls, influencer_id: str, task_id: str, created_unix: int) -> "JobLayout":
        match = _TASK_TIMESTAMP.search(task_id)
        timestamp = int(match.group(1)) if match else created_unix
        return cls(influencer_id, task_id, timestamp)

    @property
    def task_folder(self) -> str:
        """Where the processed JSON lives, and where the old system also put its raw results."""
        return f"influencers/{self.influencer_id}/qa_pairs/{self.task_id}/"

    @property
    def processed_key(self) -> str:
        return f"{self.task_folder}processed_qa_{self.timestamp}.json"

    @property
    def raw_key(self) -> str:
        return (
            f"influencers/{self.influencer_id}/qa_results/{self.task_id}/generated_qa_results.jsonl"
        )

    @property
    def root_legacy_processed_key(self) -> str:
        return f"qa_pairs/processed_qa_{self.task_id}.json"

    def legacy_processed_keys(self, keys_in_task_folder: Iterable[str]) -> list[str]:
        """Legacy processed keys among `keys_in_task_folder`, newest first, then the root one."""
        return [
            *_newest_first(keys_in_task_folder, _LEGACY_PROCESSED),
            self.root_legacy_processed_key,
        ]

    def legacy_raw_keys(self, keys_in_task_folder: Iterable[str]) -> list[str]:
        """Legacy raw keys among `keys_in_task_folder`, newest first."""
        return _newest_first(keys_in_task_folder, _LEGACY_RAW)


def _newest_first(keys: Iterable[str], pattern: re.Pattern[str]) -> list[str]:
    stamped = [(match.group(1), key) for key in keys if (match := pattern.search(key))]
    return [key for _, key in sorted(stamped, reverse=True)]


def key_from_recorded(value: str, bucket: str) -> str:
    """The S3 key in a value the registry recorded: a key, or an old row's URL to the object
    (s3://bucket/key, https://bucket.s3.<region>.amazonaws.com/key,
    https://s3.<region>.amazonaws.com/bucket/key)."""
    value = value.strip()
    if "://" not in value:
        return value.lstrip("/")
    parts = urlsplit(value)
    path = unquote(parts.path).lstrip("/")
    if parts.scheme == "s3" or parts.netloc.startswith(f"{bucket}."):
        return path
    prefix = f"{bucket}/"
    return path.removeprefix(prefix)
