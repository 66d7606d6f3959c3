"""Fetch for fine-tuning: processed JSON → raw results → provider output, re-uploading what a
fallback had to rebuild."""

import json
from typing import TYPE_CHECKING

import pytest
from devstack.fakes.fake_batch_api import FakeBatchApi
from qa_sync.components import Components
from qa_sync.fetch import JobPending, PairFormat, PairSource
from qa_sync.registry.models import BatchJob

from tests.support.qa_sync import PHONE_NUMBER, answered_twice, pairs_file

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def job(qa: Components, provider: FakeBatchApi) -> BatchJob:
    output, _ = pairs_file(3)
    registered = qa.registry.register("42", provider.seed_batch(output)["id"])
    qa.syncer.sync(registered)
    return qa.registry.get(registered.task_id)


def fetch_json(qa: Components, task_id: str) -> tuple[PairSource, dict[str, object]]:
    with qa.fetcher.fetch(task_id) as fetched:
        text = b"".join(fetched.body(PairFormat.JSON, "system"))
        return fetched.source, json.loads(text)


def exists(s3: "S3Client", bucket: str, key: str | None) -> bool:
    return s3.list_objects_v2(Bucket=bucket, Prefix=str(key)).get("KeyCount", 0) == 1


def test_pairs_come_from_the_processed_json_when_it_is_sound(qa: Components, job: BatchJob) -> None:
    source, document = fetch_json(qa, job.task_id)

    assert source == PairSource.PROCESSED
    assert document["total_qa_pairs"] == 3


def test_without_processed_json_pairs_come_from_raw_and_it_is_uploaded_again(
    qa: Components, job: BatchJob, s3: "S3Client", bucket: str
) -> None:
    s3.delete_object(Bucket=bucket, Key=str(job.processed_key))

    source, document = fetch_json(qa, job.task_id)

    assert source == PairSource.RAW
    assert document["total_qa_pairs"] == 3
    assert exists(s3, bucket, job.processed_key)
    assert qa.reconciler.run(repair=False).healthy


def test_without_either_object_pairs_come_from_the_provider_and_both_are_uploaded(
    qa: Components, job: BatchJob, s3: "S3Client", bucket: str
) -> None:
    s3.delete_object(Bucket=bucket, Key=str(job.processed_key))
    s3.delete_object(Bucket=bucket, Key=str(job.raw_key))

    source, document = fetch_json(qa, job.task_id)

    assert source == PairSource.PROVIDER
    assert document["total_qa_pairs"] == 3
    assert exists(s3, bucket, job.processed_key)
    assert exists(s3, bucket, job.raw_key)
    assert qa.reconciler.run(repair=False).healthy


def test_chat_format_gives_one_fine_tuning_example_per_pair(qa: Components, job: BatchJob) -> None:
    with qa.fetcher.fetch(job.task_id) as fetched:
        lines = b"".join(fetched.body(PairFormat.CHAT_JSONL, "너는 도우미야.")).splitlines()

    assert len(lines) == 3
    assert json.loads(lines[0]) == {
        "messages": [
            {"role": "system", "content": "너는 도우미야."},
            {"role": "user", "content": "질문 req-0?"},
            {"role": "assistant", "content": "답변 req-0."},
        ]
    }


@pytest.mark.parametrize("processed_lost", [False, True], ids=["processed", "rebuilt"])
def test_fine_tuning_examples_hold_one_answer_per_custom_id(
    qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str, processed_lost: bool
) -> None:
    output, errors = answered_twice()
    registered = qa.registry.register("42", provider.seed_batch(output, errors)["id"])
    qa.syncer.sync(registered)
    job = qa.registry.get(registered.task_id)
    if processed_lost:
        s3.delete_object(Bucket=bucket, Key=str(job.processed_key))

    with qa.fetcher.fetch(job.task_id) as fetched:
        lines = b"".join(fetched.body(PairFormat.CHAT_JSONL, "system")).splitlines()

    answers = [json.loads(line)["messages"][2]["content"] for line in lines]
    assert answers == ["아침 7시에 달려요.", "김치찌개요."]
    assert PHONE_NUMBER not in b"".join(lines).decode()


def test_a_pending_job_is_not_synced_by_the_fetch(qa: Components, provider: FakeBatchApi) -> None:
    output, _ = pairs_file(2)
    batch = provider.seed_batch(output)
    job = qa.registry.register("1", batch["id"])  # no webhook, no poll yet

    with pytest.raises(JobPending):
        qa.fetcher.fetch(job.task_id)

    # The sync (a provider download and an S3 upload) is left to the background work.
    assert qa.registry.get(job.task_id).status == "pending"
    assert provider.count("GET", f"/v1/batches/{batch['id']}") == 0
