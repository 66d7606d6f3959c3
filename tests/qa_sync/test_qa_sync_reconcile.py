"""Reconcile: every terminal job's objects are verified; what is missing, corrupt or under a
legacy key is repaired, and the report says what was checked, found and fixed."""

import hashlib
import json
from typing import TYPE_CHECKING

import pytest
from devstack.fakes.fake_batch_api import FakeBatchApi
from qa_sync.components import Components
from qa_sync.registry.jobs import Registry
from qa_sync.registry.models import BatchJob
from qa_sync.report import Action, ObjectKind, Problem
from sqlalchemy import text

from tests.support.qa_sync import legacy_processed_document, pairs_file

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def job(qa: Components, provider: FakeBatchApi) -> BatchJob:
    """A job synced the normal way: 3 pairs, both objects in S3."""
    output, _ = pairs_file(3)
    registered = qa.registry.register("42", provider.seed_batch(output)["id"])
    qa.syncer.sync(registered)
    return qa.registry.get(registered.task_id)


def body(s3: "S3Client", bucket: str, key: str | None) -> bytes:
    assert key is not None
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def problems(report_findings: list, kind: ObjectKind) -> set[Problem]:  # type: ignore[type-arg]
    return {finding.problem for finding in report_findings if finding.object == kind}


def test_healthy_jobs_are_verified_and_left_alone(qa: Components, job: BatchJob) -> None:
    report = qa.reconciler.run(repair=True)

    assert (report.jobs_checked, report.jobs_ok, report.objects_checked) == (1, 1, 2)
    assert (report.findings, report.fixes, report.unrepaired) == ([], [], [])
    assert report.healthy
    verified = qa.registry.get(job.task_id)
    assert verified.last_verification == "ok"
    assert verified.last_verified_at is not None
    assert verified.repair_attempts == 0


def test_a_deleted_processed_json_is_rebuilt_from_raw_byte_for_byte(
    qa: Components, job: BatchJob, s3: "S3Client", bucket: str
) -> None:
    original = body(s3, bucket, job.processed_key)
    s3.delete_object(Bucket=bucket, Key=str(job.processed_key))

    checked = qa.reconciler.run(repair=False)
    assert problems(checked.findings, ObjectKind.PROCESSED) == {Problem.MISSING}
    assert not checked.healthy
    assert qa.registry.get(job.task_id).last_verification == "damaged"
    assert s3.list_objects_v2(Bucket=bucket, Prefix=str(job.processed_key)).get("KeyCount") == 0

    repaired = qa.reconciler.run(repair=True)

    assert [(fix.object, fix.action) for fix in repaired.fixes] == [
        (ObjectKind.PROCESSED, Action.REBUILT_FROM_RAW)
    ]
    assert repaired.healthy
    assert body(s3, bucket, job.processed_key) == original
    after = qa.registry.get(job.task_id)
    assert (after.last_verification, after.repair_attempts) == ("repaired", 1)
    assert qa.reconciler.run(repair=True).fixes == []


def test_a_corrupted_processed_json_is_caught_by_its_checksum_and_rebuilt(
    qa: Components, job: BatchJob, s3: "S3Client", bucket: str
) -> None:
    original = body(s3, bucket, job.processed_key)
    tampered = original.replace("답변 req-1.".encode(), "답변 바뀜.".encode())
    s3.put_object(Bucket=bucket, Key=str(job.processed_key), Body=tampered)

    report = qa.reconciler.run(repair=True)

    assert problems(report.findings, ObjectKind.PROCESSED) == {Problem.CHECKSUM_MISMATCH}
    assert body(s3, bucket, job.processed_key) == original
    assert hashlib.sha256(original).hexdigest() == qa.registry.get(job.task_id).processed_sha256


def test_a_processed_json_that_no_longer_parses_is_rebuilt(
    qa: Components, job: BatchJob, s3: "S3Client", bucket: str
) -> None:
    original = body(s3, bucket, job.processed_key)
    s3.put_object(Bucket=bucket, Key=str(job.processed_key), Body=original[: len(original) // 2])

    report = qa.reconciler.run(repair=True)

    found = problems(report.findings, ObjectKind.PROCESSED)
    assert found == {Problem.CHECKSUM_MISMATCH, Problem.UNPARSEABLE}
    assert body(s3, bucket, job.processed_key) == original


def test_a_registry_count_that_disagrees_with_the_file_is_settled_from_raw(
    qa: Components, job: BatchJob
) -> None:
    qa.registry.update(job.batch_key_id, generated_qa_pairs=99)

    report = qa.reconciler.run(repair=True)

    assert problems(report.findings, ObjectKind.PROCESSED) == {Problem.COUNT_MISMATCH}
    assert qa.registry.get(job.task_id).generated_qa_pairs == 3


def test_missing_raw_results_are_fetched_again_from_the_provider(
    qa: Components, job: BatchJob, s3: "S3Client", bucket: str, provider: FakeBatchApi
) -> None:
    original = body(s3, bucket, job.raw_key)
    s3.delete_object(Bucket=bucket, Key=str(job.raw_key))
    s3.put_object(Bucket=bucket, Key=str(job.processed_key), Body=b"{}")

    report = qa.reconciler.run(repair=True)

    assert [(fix.object, fix.action) for fix in report.fixes] == [
        (ObjectKind.RAW, Action.REFETCHED_FROM_PROVIDER),
        (ObjectKind.PROCESSED, Action.REBUILT_FROM_RAW),
    ]
    assert body(s3, bucket, job.raw_key) == original
    assert json.loads(body(s3, bucket, job.processed_key))["total_qa_pairs"] == 3


def test_raw_results_the_provider_cannot_give_are_reported_unrepaired(
    qa: Components, job: BatchJob, s3: "S3Client", bucket: str, provider: FakeBatchApi
) -> None:
    s3.delete_object(Bucket=bucket, Key=str(job.raw_key))
    provider.refuse()

    report = qa.reconciler.run(repair=True)

    assert not report.healthy
    assert [(item.object, item.task_id) for item in report.unrepaired] == [
        (ObjectKind.RAW, job.task_id)
    ]
    damaged = qa.registry.get(job.task_id)
    assert damaged.last_verification == "damaged"
    assert damaged.last_error is not None
    assert "raw" in damaged.last_error


def test_a_job_another_process_is_working_on_is_skipped(
    qa: Components, job: BatchJob, settings: object
) -> None:
    other = Registry(qa.registry._sessions, lease_seconds=60)
    with other.leased(job.batch_key_id) as held:
        assert held is not None
        report = qa.reconciler.run(repair=True)
    assert report.jobs_busy == [job.task_id]
    assert report.jobs_checked == 0


def insert_old_row(qa: Components, task_id: str, batch_id: str | None, **columns: object) -> None:
    """A row as the old system wrote it: its own columns only, statuses in capitals."""
    values = {
        "influencer_id": "7",
        "task_id": task_id,
        "openai_batch_id": batch_id,
        "status": "COMPLETED",
        "is_processed": True,
        "is_uploaded_to_s3": True,
        "is_finetuning_started": False,
        "created_at": "2025-06-13 13:00:00",
        "updated_at": "2025-06-13 13:10:00",
        **columns,
    }
    names = ", ".join(values)
    params = ", ".join(f":{name}" for name in values)
    with qa.engine.begin() as connection:
        connection.execute(text(f"INSERT INTO batch_key ({names}) VALUES ({params})"), values)


def test_legacy_keys_in_the_task_folder_are_moved_to_the_standard_layout(
    qa: Components, s3: "S3Client", bucket: str
) -> None:
    task_id = "qa_7_1749819600"
    folder = f"influencers/7/qa_pairs/{task_id}/"
    processed = legacy_processed_document("7", task_id, 3)
    raw, _ = pairs_file(3)
    s3.put_object(Bucket=bucket, Key=f"{folder}processed_qa_20250613_130816.json", Body=processed)
    s3.put_object(Bucket=bucket, Key=f"{folder}raw_results_20250613_130816.jsonl", Body=raw)
    # The old columns held URLs, and the wrong way round: s3_qa_file_url is the processed file.
    insert_old_row(
        qa,
        task_id,
        "batch_old_1",
        s3_qa_file_url=f"s3://{bucket}/{folder}processed_qa_20250613_130816.json",
        s3_processed_file_url=f"https://{bucket}.s3.us-east-1.amazonaws.com/{folder}raw_results_20250613_130816.jsonl",
        generated_qa_pairs=3,
    )

    report = qa.reconciler.run(repair=True)

    assert report.healthy
    assert {(fix.object, fix.action) for fix in report.fixes} == {
        (ObjectKind.RAW, Action.MOVED_FROM_LEGACY_KEY),
        (ObjectKind.PROCESSED, Action.MOVED_FROM_LEGACY_KEY),
    }
    job = qa.registry.get(task_id)
    assert job.processed_key == f"{folder}processed_qa_1749819600.json"
    assert job.raw_key == f"influencers/7/qa_results/{task_id}/generated_qa_results.jsonl"
    assert body(s3, bucket, job.processed_key) == processed
    assert body(s3, bucket, job.raw_key) == raw
    assert job.processed_sha256 == hashlib.sha256(processed).hexdigest()
    assert job.raw_sha256 == hashlib.sha256(raw).hexdigest()
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {job.processed_key, job.raw_key}
    assert qa.reconciler.run(repair=True).fixes == []


def test_a_processed_json_at_the_bucket_root_is_moved_and_raw_fetched_from_the_provider(
    qa: Components, s3: "S3Client", bucket: str, provider: FakeBatchApi
) -> None:
    task_id = "qa_7_1749819601"
    output, _ = pairs_file(2)
    batch = provider.seed_batch(output)
    processed = legacy_processed_document("7", task_id, 2)
    s3.put_object(Bucket=bucket, Key=f"qa_pairs/processed_qa_{task_id}.json", Body=processed)
    insert_old_row(qa, task_id, batch["id"])  # no keys, no counts: only the objects tell

    report = qa.reconciler.run(repair=True)

    assert report.healthy
    assert {(fix.object, fix.action, fix.from_key) for fix in report.fixes} == {
        (ObjectKind.RAW, Action.REFETCHED_FROM_PROVIDER, None),
        (
            ObjectKind.PROCESSED,
            Action.MOVED_FROM_LEGACY_KEY,
            f"qa_pairs/processed_qa_{task_id}.json",
        ),
    }
    job = qa.registry.get(task_id)
    assert job.generated_qa_pairs == 2
    assert job.output_file_id == batch["output_file_id"]
    assert body(s3, bucket, job.raw_key) == output
    assert body(s3, bucket, job.processed_key) == processed


def test_objects_at_standard_keys_that_the_registry_never_recorded_are_recorded(
    qa: Components, job: BatchJob
) -> None:
    qa.registry.update(
        job.batch_key_id, processed_sha256=None, raw_sha256=None, generated_qa_pairs=None
    )

    report = qa.reconciler.run(repair=True)

    assert {finding.problem for finding in report.findings} == {Problem.UNRECORDED}
    assert {fix.action for fix in report.fixes} == {Action.RECORDED}
    recorded = qa.registry.get(job.task_id)
    assert (recorded.processed_sha256, recorded.raw_sha256) == (
        job.processed_sha256,
        job.raw_sha256,
    )
    assert recorded.generated_qa_pairs == 3


def test_an_adopted_raw_object_without_headers_is_made_whole(
    qa: Components, s3: "S3Client", bucket: str
) -> None:
    # The old system uploaded raw results without a content type or checksum metadata, and the
    # processed JSON is missing: reconcile rebuilds it and rewrites the raw object's headers.
    task_id = "qa_7_1749819602"
    raw, _ = pairs_file(2)
    raw_key = f"influencers/7/qa_results/{task_id}/generated_qa_results.jsonl"
    s3.put_object(Bucket=bucket, Key=raw_key, Body=raw)
    insert_old_row(qa, task_id, None, s3_processed_file_url=raw_key)

    report = qa.reconciler.run(repair=True)

    assert report.healthy, report.unrepaired
    assert (ObjectKind.RAW, Action.HEADERS_REWRITTEN) in {
        (fix.object, fix.action) for fix in report.fixes
    }
    job = qa.registry.get(task_id)
    for key, content_type, sha256 in (
        (job.raw_key, "application/x-ndjson", job.raw_sha256),
        (job.processed_key, "application/json", job.processed_sha256),
    ):
        assert key is not None
        head = s3.head_object(Bucket=bucket, Key=key)
        assert (head["ContentType"], head["Metadata"].get("sha256")) == (content_type, sha256)
    assert body(s3, bucket, job.raw_key) == raw
    assert job.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert qa.reconciler.run(repair=True).fixes == []
