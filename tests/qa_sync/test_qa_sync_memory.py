"""Processing a batch's output streams it: memory stays flat from 5,000 to 50,000 lines.

The output file is generated on the fly by the fake provider (nothing holds it whole), the
service streams it through spools into S3, and tracemalloc measures the peak of Python
allocations in this process (the service's threads and the fake provider's) while it runs.
Each line is a realistic-size output line of about 4 KB (a long Korean answer), so 50,000
lines are about 200 MB: the Batch API's own limit.
"""

import tracemalloc
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from devstack.fakes.fake_batch_api import FakeBatchApi
from qa_sync.components import Components, build_components
from qa_sync.settings import QaSyncSettings
from qa_sync.sync import SyncOutcome

from tests.support.qa_sync import pair_line

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024
ANSWER = "오늘도 꾸준히 운동한 덕분에 컨디션이 정말 좋아졌어요. " * 47  # ~4 KB lines
LINES_PER_CHUNK = 64


def generated_output(lines: int) -> Iterator[bytes]:
    chunk: list[bytes] = []
    for n in range(lines):
        chunk.append(
            pair_line(f"req-{n}", f"{n}번째 질문: 어떻게 꾸준히 운동하나요?", ANSWER) + b"\n"
        )
        if len(chunk) == LINES_PER_CHUNK:
            yield b"".join(chunk)
            chunk.clear()
    if chunk:
        yield b"".join(chunk)


@pytest.fixture
def production_sized(settings: QaSyncSettings, aws_env: str) -> Iterator[Components]:
    """The service with its default spool, part and multipart sizes."""
    defaults = QaSyncSettings.model_fields
    sizes = {
        name: defaults[name].default
        for name in ("spool_memory_bytes", "s3_part_bytes", "s3_multipart_threshold_bytes")
    }
    components = build_components(settings.model_copy(update=sizes))
    yield components
    components.close()


def peak_while_syncing(qa: Components, provider: FakeBatchApi, lines: int) -> tuple[int, int]:
    """Peak traced memory during one sync, and the size of the output it processed."""
    batch = provider.seed_batch(lambda: generated_output(lines), total=lines)
    job = qa.registry.register("77", batch["id"])
    tracemalloc.start()
    try:
        result = qa.syncer.sync(job)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.outcome == SyncOutcome.SYNCED, result.detail
    synced = qa.registry.get(job.task_id)
    assert synced.generated_qa_pairs == lines
    assert synced.raw_size_bytes == sum(map(len, generated_output(lines)))
    return peak, synced.raw_size_bytes


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_peak_memory_does_not_grow_with_the_size_of_the_output(
    production_sized: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    small, small_output = peak_while_syncing(production_sized, provider, 5_000)
    large, large_output = peak_while_syncing(production_sized, provider, 50_000)

    print(
        f"\npeak Python memory: {small / MIB:.1f} MiB for 5,000 lines "
        f"({small_output / MIB:.0f} MiB), {large / MIB:.1f} MiB for 50,000 lines "
        f"({large_output / MIB:.0f} MiB)"
    )
    assert large < 1.5 * small  # ten times the lines, not ten times the memory
    assert large < 64 * MIB
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])  # moto holds objects in memory
