"""Completion: a terminal batch's results end up in S3 under the standard keys, recorded with
their checksums, whatever the batch's lines, state or the faults on the way."""

import hashlib
import json
import random
from typing import TYPE_CHECKING, Any

import pytest
from devstack.fakes.fake_batch_api import FakeBatchApi
from devstack.processes import free_port
from qa_sync.components import Components, build_components
from qa_sync.settings import MIB, QaSyncSettings
from qa_sync.sync import SyncOutcome

from tests.support.qa_sync import (
    PHONE_NUMBER,
    InjectedS3Failures,
    answered_twice,
    error_line,
    jsonl,
    pair_line,
    pairs_file,
    responses_line,
    result_line,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def stored(s3: "S3Client", bucket: str, key: str | None) -> tuple[bytes, dict[str, Any]]:
    assert key is not None
    response = s3.get_object(Bucket=bucket, Key=key)
    return response["Body"].read(), dict(response)


def test_a_completed_batch_lands_under_the_standard_keys_with_checksums(
    qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    output, ids = pairs_file(3)
    batch = provider.seed_batch(output)
    job = qa.registry.register("42", batch["id"])

    assert qa.syncer.sync(job).outcome == SyncOutcome.SYNCED

    job = qa.registry.get(job.task_id)
    timestamp = job.task_id.rsplit("_", 1)[1]
    assert (
        job.processed_key == f"influencers/42/qa_pairs/{job.task_id}/processed_qa_{timestamp}.json"
    )
    assert job.raw_key == f"influencers/42/qa_results/{job.task_id}/generated_qa_results.jsonl"
    raw, raw_head = stored(s3, bucket, job.raw_key)
    assert raw == output
    assert raw_head["ContentType"] == "application/x-ndjson"
    assert hashlib.sha256(raw).hexdigest() == job.raw_sha256 == raw_head["Metadata"]["sha256"]
    processed, processed_head = stored(s3, bucket, job.processed_key)
    assert processed_head["ContentType"] == "application/json"
    assert hashlib.sha256(processed).hexdigest() == job.processed_sha256
    assert processed_head["Metadata"]["sha256"] == job.processed_sha256
    document = json.loads(processed)
    assert document["influencer_id"] == "42"
    assert document["task_id"] == job.task_id
    assert document["total_qa_pairs"] == 3
    assert [pair["custom_id"] for pair in document["qa_pairs"]] == ids
    assert document["qa_pairs"][0] == {
        "question": "질문 req-0?",
        "answer": "답변 req-0.",
        "custom_id": "req-0",
    }
    assert (job.status, job.request_count, job.total_qa_pairs) == ("completed", 3, 3)
    assert job.is_processed
    assert job.is_uploaded_to_s3
    assert job.processed_size_bytes == len(processed)


def test_pairs_are_matched_by_custom_id_not_by_line_order(
    qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    lines = [pair_line(f"req-{n}", f"question {n}", f"answer {n}") for n in range(20)]
    random.Random(7).shuffle(lines)
    job = qa.registry.register("1", provider.seed_batch(jsonl(lines))["id"])

    qa.syncer.sync(job)

    document = json.loads(stored(s3, bucket, qa.registry.get(job.task_id).processed_key)[0])
    assert len(document["qa_pairs"]) == 20
    for pair in document["qa_pairs"]:
        number = pair["custom_id"].removeprefix("req-")
        assert (pair["question"], pair["answer"]) == (f"question {number}", f"answer {number}")


def test_every_kind_of_bad_line_is_counted_and_none_fails_the_job(
    qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    output = jsonl(
        [
            pair_line("ok-1", "q1", "a1"),
            json.dumps({"custom_id": "nr", "response": None, "error": None}).encode(),
            result_line("nc", None),
            result_line("s500", "x", status_code=500),
            result_line("s429", "x", status_code=429),
            result_line("tr", '{"q": "cut', finish_reason="length"),
            result_line("up", "no pair here"),
            b"{broken line",
            result_line("text", "Q: 텍스트 질문 A: 텍스트 답"),
            b"",
        ]
    )
    errors = jsonl([error_line("e1"), error_line("e2"), error_line("e3", "server_error")])
    job = qa.registry.register("5", provider.seed_batch(output, errors)["id"])

    assert qa.syncer.sync(job).outcome == SyncOutcome.SYNCED

    job = qa.registry.get(job.task_id)
    expected_bad = {
        "null_response": 1,
        "null_content": 1,
        "truncated": 1,
        "unparseable": 1,
        "malformed_line": 1,
        "request_error": 5,
    }
    assert job.line_stats == {
        "lines": 12,
        "pairs": 2,
        "bad": expected_bad,
        "error_codes": {"rate_limit_exceeded": 2, "server_error": 3},
    }
    assert job.generated_qa_pairs == 2
    document = json.loads(stored(s3, bucket, job.processed_key)[0])
    assert document["line_stats"]["bad"] == expected_bad
    assert [pair["custom_id"] for pair in document["qa_pairs"]] == ["ok-1", "text"]
    raw = stored(s3, bucket, job.raw_key)[0]
    assert raw == output + errors  # the error file is part of the raw results


def test_one_pair_per_custom_id_and_the_dropped_ones_are_counted(
    qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    """The same pair twice is kept once; two contradicting pairs are both left out."""
    output, errors = answered_twice()
    job = qa.registry.register("8", provider.seed_batch(output, errors)["id"])

    assert qa.syncer.sync(job).outcome == SyncOutcome.SYNCED

    job = qa.registry.get(job.task_id)
    processed = stored(s3, bucket, job.processed_key)[0]
    document = json.loads(processed)
    assert [(pair["custom_id"], pair["answer"]) for pair in document["qa_pairs"]] == [
        ("same", "아침 7시에 달려요."),
        ("once", "김치찌개요."),
    ]
    assert PHONE_NUMBER not in processed.decode()
    assert document["total_qa_pairs"] == job.total_qa_pairs == job.generated_qa_pairs == 2
    expected_bad = {"duplicate_custom_id": 1, "conflicting_custom_id": 2, "request_error": 2}
    assert job.line_stats is not None
    assert job.line_stats["bad"] == document["line_stats"]["bad"] == expected_bad
    assert job.line_stats["lines"] == 7


@pytest.mark.parametrize("status", ["failed", "expired", "cancelled"])
def test_unfinished_batches_end_terminal_with_their_partial_output(
    status: str, qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    output, _ = pairs_file(2)
    job = qa.registry.register("9", provider.seed_batch(output, status=status, total=10)["id"])

    assert qa.syncer.sync(job).outcome == SyncOutcome.SYNCED

    job = qa.registry.get(job.task_id)
    assert (job.status, job.request_count, job.total_qa_pairs) == (status, 10, 2)
    assert len(json.loads(stored(s3, bucket, job.processed_key)[0])["qa_pairs"]) == 2


def test_a_failed_batch_without_any_output_still_ends_terminal(
    qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    job = qa.registry.register("9", provider.seed_batch(None, status="failed", total=4)["id"])

    qa.syncer.sync(job)

    job = qa.registry.get(job.task_id)
    assert (job.status, job.generated_qa_pairs) == ("failed", 0)
    assert json.loads(stored(s3, bucket, job.processed_key)[0])["qa_pairs"] == []


def test_syncing_the_same_job_twice_changes_nothing_the_second_time(
    qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    output, _ = pairs_file(4)
    batch = provider.seed_batch(output)
    job = qa.registry.register("3", batch["id"])
    qa.syncer.sync(job)
    first = qa.registry.get(job.task_id)
    heads = {
        key: s3.head_object(Bucket=bucket, Key=key)
        for key in (first.raw_key, first.processed_key)
        if key
    }
    downloads = provider.count("GET", f"/v1/files/{batch['output_file_id']}/content")

    assert qa.syncer.sync(first).outcome == SyncOutcome.ALREADY_SYNCED
    assert [result.outcome for result in qa.syncer.sync_pending()] == []

    second = qa.registry.get(job.task_id)
    assert second.updated_at == first.updated_at
    assert second.sync_attempts == first.sync_attempts == 1
    assert provider.count("GET", f"/v1/files/{batch['output_file_id']}/content") == downloads == 1
    for key, head in heads.items():
        again = s3.head_object(Bucket=bucket, Key=key)
        assert (again["ETag"], again["LastModified"]) == (head["ETag"], head["LastModified"])


def test_a_running_batch_stays_pending_until_it_finishes(
    qa: Components, provider: FakeBatchApi
) -> None:
    output, _ = pairs_file(2)
    batch = provider.seed_batch(output, status="in_progress")
    job = qa.registry.register("4", batch["id"])

    assert qa.syncer.sync(job).outcome == SyncOutcome.WAITING
    waiting = qa.registry.get(job.task_id)
    assert (waiting.status, waiting.provider_status, waiting.poll_attempts) == (
        "pending",
        "in_progress",
        1,
    )

    provider.set_status(batch["id"], "completed")
    assert [result.outcome for result in qa.syncer.sync_pending()] == [SyncOutcome.SYNCED]
    assert qa.registry.get(job.task_id).status == "completed"


def test_an_unreachable_provider_leaves_the_job_pending_for_a_later_retry(
    qa: Components, provider: FakeBatchApi, settings: QaSyncSettings
) -> None:
    output, _ = pairs_file(2)
    job = qa.registry.register("6", provider.seed_batch(output)["id"])
    nowhere = settings.model_copy(update={"openai_base_url": f"http://127.0.0.1:{free_port()}/v1"})
    cut_off = build_components(nowhere)
    try:
        result = cut_off.syncer.sync(job)
    finally:
        cut_off.close()

    assert result.outcome == SyncOutcome.PROVIDER_UNAVAILABLE
    pending = qa.registry.get(job.task_id)
    assert (pending.status, pending.poll_attempts) == ("pending", 1)
    assert pending.last_error
    assert "unreachable" in pending.last_error
    assert pending.lease_owner is None

    assert qa.syncer.sync(pending).outcome == SyncOutcome.SYNCED
    done = qa.registry.get(job.task_id)
    assert (done.status, done.last_error) == ("completed", None)


def test_a_provider_failing_mid_download_leaves_nothing_half_done(
    qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    output, _ = pairs_file(2)
    job = qa.registry.register("6", provider.seed_batch(output)["id"])
    provider.fail(times=1, status=503, path="/v1/files/")

    assert qa.syncer.sync(job).outcome == SyncOutcome.PROVIDER_UNAVAILABLE
    pending = qa.registry.get(job.task_id)
    assert (pending.status, pending.sync_attempts, pending.raw_key) == ("pending", 1, None)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0

    assert qa.syncer.sync(pending).outcome == SyncOutcome.SYNCED


@pytest.mark.parametrize("failures", [2, 4], ids=["botocore-retries", "operation-retries"])
def test_s3_puts_that_fail_a_few_times_are_retried_until_they_succeed(
    failures: int, qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    output, _ = pairs_file(3)
    job = qa.registry.register("8", provider.seed_batch(output)["id"])
    puts = InjectedS3Failures(failures)
    qa.storage.client.meta.events.register("before-send.s3.PutObject", puts)

    assert qa.syncer.sync(job).outcome == SyncOutcome.SYNCED

    assert puts.attempts == failures + 2  # the raw PUT's failures, its success, the processed PUT
    job = qa.registry.get(job.task_id)
    assert hashlib.sha256(stored(s3, bucket, job.raw_key)[0]).hexdigest() == job.raw_sha256


def test_s3_down_for_longer_than_the_retries_leaves_the_job_pending(
    settings: QaSyncSettings, provider: FakeBatchApi, aws_env: str
) -> None:
    qa = build_components(settings.model_copy(update={"s3_max_attempts": 2}))
    try:
        output, _ = pairs_file(1)
        job = qa.registry.register("8", provider.seed_batch(output)["id"])
        puts = InjectedS3Failures(1000)
        qa.storage.client.meta.events.register("before-send.s3.PutObject", puts)

        assert qa.syncer.sync(job).outcome == SyncOutcome.STORAGE_FAILED
        pending = qa.registry.get(job.task_id)
        assert (pending.status, pending.sync_attempts) == ("pending", 1)
        assert pending.last_error
        assert "InternalError" in pending.last_error

        puts.remaining = 0
        assert qa.syncer.sync(pending).outcome == SyncOutcome.SYNCED
    finally:
        qa.close()


def test_a_large_output_goes_up_in_parts_with_its_checksum(
    qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    answer = "긴 답변입니다. " * 200
    output = jsonl([pair_line(f"req-{n}", f"질문 {n}", answer) for n in range(2_000)])
    assert len(output) > 6 * MIB
    job = qa.registry.register("11", provider.seed_batch(output)["id"])

    assert qa.syncer.sync(job).outcome == SyncOutcome.SYNCED

    job = qa.registry.get(job.task_id)
    raw, head = stored(s3, bucket, job.raw_key)
    assert "-" in head["ETag"]  # a multipart upload's ETag ends in -<parts>
    assert raw == output
    assert hashlib.sha256(raw).hexdigest() == job.raw_sha256 == head["Metadata"]["sha256"]


def test_a_responses_batch_gives_its_pairs_and_counts_its_truncated_lines(
    qa: Components, provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    lines = [
        responses_line("r-0", '{"q": "질문 0?", "a": "답변 0."}'),
        responses_line("r-1", "Q: 질문 1? A: 답변 1."),
        responses_line("r-2", "Q: 질문 2? A: 답", status="incomplete", reason="max_output_tokens"),
    ]
    job = qa.registry.register("1", provider.seed_batch(jsonl(lines))["id"])

    qa.syncer.sync(job)

    job = qa.registry.get(job.task_id)
    assert job.generated_qa_pairs == 2
    assert job.line_stats is not None
    assert job.line_stats["bad"] == {"truncated": 1}
    document = json.loads(stored(s3, bucket, job.processed_key)[0])
    assert [pair["custom_id"] for pair in document["qa_pairs"]] == ["r-0", "r-1"]
