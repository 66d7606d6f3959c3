"""The processed QA JSON: built from the raw results line by line, read back as a stream.

{"influencer_id", "task_id", "generated_at", "total_qa_pairs", "openai_batch_id", "provenance",
 "line_stats", "qa_pairs": [{"question", "answer", "custom_id"}, ...]}

At most one pair per custom_id (custom_ids.py). The document is a pure function of the raw
results and the job, so rebuilding it gives the same bytes (and SHA-256) as the first time:
`generated_at` is when the provider finished the batch.
"""

import json
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import ijson  # type: ignore[import-untyped]
from pydantic import ValidationError

from qa_sync.custom_ids import CustomIdAnswers
from qa_sync.qa_lines import BadLineFound, LineStats, QaPair, read_line
from qa_sync.spool import Spool


class ProcessedUnreadable(ValueError):
    """The processed JSON does not parse, or its pairs are not QA pairs."""


@dataclass(frozen=True)
class ProcessedHeader:
    influencer_id: str
    task_id: str
    generated_at: datetime
    openai_batch_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    raw_key: str

    def fields(self, raw: Spool, stats: LineStats) -> dict[str, Any]:
        return {
            "influencer_id": self.influencer_id,
            "task_id": self.task_id,
            "generated_at": self.generated_at.isoformat() + "Z",
            "total_qa_pairs": stats.pairs,
            "openai_batch_id": self.openai_batch_id,
            "provenance": {
                "source": "openai-batch",
                "output_file_id": self.output_file_id,
                "error_file_id": self.error_file_id,
                "raw_key": self.raw_key,
                "raw_sha256": raw.sha256,
                "raw_size_bytes": raw.size,
            },
            "line_stats": stats.model_dump(),
        }


def build_processed(
    raw: Spool, header: ProcessedHeader, memory_bytes: int
) -> tuple[Spool, LineStats]:
    """The processed JSON for the raw results in `raw`, and what its lines held.

    Two passes over raw: whether a pair is kept depends on every other line with its custom_id.
    """
    stats = LineStats()
    with closing(CustomIdAnswers()) as answers, Spool(memory_bytes) as pairs:
        answers.learn(found for found in _read_lines(raw) if isinstance(found, QaPair))
        for found in _read_lines(raw):
            if isinstance(found, BadLineFound):
                stats.count_bad(found.kind, found.error_code)
            elif (dropped := answers.verdict(found)) is not None:
                stats.count_bad(dropped)
            else:
                pairs.write((b",\n" if stats.pairs else b"") + _pair_json(found))
                stats.count_pair()
        document = Spool(memory_bytes)
        try:
            head = json.dumps(header.fields(raw, stats), ensure_ascii=False)
            # The head without its closing brace, then the pairs, one per line.
            document.write(head[:-1].encode() + b', "qa_pairs": [\n')
            document.copy_from(pairs)
            document.write(b"\n]}\n" if stats.pairs else b"]}\n")
        except BaseException:
            document.close()
            raise
    return document, stats


def _read_lines(raw: Spool) -> Iterator[QaPair | BadLineFound]:
    """Each line of raw that is not blank, as its pair or as the bad line it is."""
    for line in raw.lines():
        if not line.strip():
            continue
        try:
            yield read_line(line)
        except BadLineFound as bad:
            yield bad


def _pair_json(pair: QaPair) -> bytes:
    return json.dumps(pair.model_dump(), ensure_ascii=False).encode()


def read_pairs(reader: IO[bytes]) -> Iterator[QaPair]:
    """The pairs of a processed JSON, one at a time, without reading it all into memory."""
    try:
        for item in ijson.items(reader, "qa_pairs.item", use_float=True):
            yield QaPair.model_validate(item)
    except (ijson.JSONError, ValidationError, UnicodeDecodeError) as error:
        raise ProcessedUnreadable(str(error).splitlines()[0]) from error


def count_pairs(processed: Spool) -> int:
    """How many pairs the processed JSON holds; raises `ProcessedUnreadable` if it is broken."""
    return sum(1 for _ in read_pairs(processed.reader()))


def chat_line(pair: QaPair, system_prompt: str) -> bytes:
    """One fine-tuning example in OpenAI's chat format."""
    messages = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": pair.question},
        {"role": "assistant", "content": pair.answer},
    ]
    return json.dumps({"messages": messages}, ensure_ascii=False).encode() + b"\n"
