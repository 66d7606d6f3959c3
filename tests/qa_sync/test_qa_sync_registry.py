"""The registry: migrations that adopt the old BATCH_KEY table, registration, leases."""

import threading
import time
from collections.abc import Iterator

import pytest
from qa_sync.registry.database import create_registry_engine, migrate, session_factory
from qa_sync.registry.jobs import Attempt, JobNotFound, Registry
from sqlalchemy import Engine, inspect, text

# The table as the old system created it (unquoted name: PostgreSQL folds it to batch_key).
OLD_TABLE = """
CREATE TABLE BATCH_KEY (
    batch_key_id BIGINT PRIMARY KEY,
    influencer_id BIGINT NOT NULL,
    batch_key VARCHAR(255),
    task_id VARCHAR(255) NOT NULL UNIQUE,
    openai_batch_id VARCHAR(255) UNIQUE,
    status VARCHAR(32) NOT NULL,
    total_qa_pairs INTEGER,
    generated_qa_pairs INTEGER,
    input_file_id VARCHAR(255),
    output_file_id VARCHAR(255),
    error_message TEXT,
    vllm_task_id VARCHAR(255),
    s3_qa_file_url VARCHAR(1024),
    s3_processed_file_url VARCHAR(1024),
    is_processed BOOLEAN NOT NULL,
    is_uploaded_to_s3 BOOLEAN NOT NULL,
    is_finetuning_started BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP
)
"""
OLD_ROW = """
INSERT INTO batch_key (batch_key_id, influencer_id, task_id, openai_batch_id, status,
    total_qa_pairs, generated_qa_pairs,
    s3_qa_file_url, s3_processed_file_url, is_processed, is_uploaded_to_s3,
    is_finetuning_started, created_at, updated_at)
VALUES (1, 7, 'qa_7_1700000000', 'batch_old', 'COMPLETED', 50, 48,
    'qa_pairs/processed_qa_qa_7_1700000000.json', NULL, TRUE, TRUE, FALSE,
    '2023-11-14 22:13:20', '2023-11-14 22:13:20')
"""


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_registry_engine(database_url)
    yield engine
    engine.dispose()


def test_migrations_adopt_the_old_table_and_keep_its_rows(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text(OLD_TABLE))
        connection.execute(text(OLD_ROW))

    migrate(engine)
    migrate(engine)  # a second run finds nothing to do

    columns = {column["name"] for column in inspect(engine).get_columns("batch_key")}
    assert {
        "processed_sha256",
        "raw_sha256",
        "sync_attempts",
        "last_verified_at",
        "lease_until",
    } <= columns
    assert inspect(engine).has_table("qa_sync_webhook_event")
    job = Registry(session_factory(engine), lease_seconds=60).get("qa_7_1700000000")
    assert job.processed_key == "qa_pairs/processed_qa_qa_7_1700000000.json"  # s3_qa_file_url
    assert (job.status, job.is_terminal, job.sync_attempts) == ("COMPLETED", True, 0)


@pytest.fixture
def registry(engine: Engine) -> Registry:
    migrate(engine)
    return Registry(session_factory(engine), lease_seconds=60)


def test_registering_a_batch_twice_gives_the_same_job(registry: Registry) -> None:
    first = registry.register("42", "batch_a", batch_key="key-1")
    again = registry.register("42", "batch_a")

    assert again.task_id == first.task_id
    assert first.task_id.startswith("qa_42_")
    assert (first.status, first.batch_key) == ("pending", "key-1")


def test_two_jobs_for_one_influencer_in_the_same_second_get_distinct_task_ids(
    registry: Registry,
) -> None:
    ids = {registry.register("42", f"batch_{n}").task_id for n in range(3)}
    assert len(ids) == 3


def test_a_job_is_leased_to_one_process_at_a_time(registry: Registry, engine: Engine) -> None:
    job = registry.register("1", "batch_lease")
    other = Registry(session_factory(engine), lease_seconds=60)

    with registry.leased(job.batch_key_id) as mine:
        assert mine is not None
        with other.leased(job.batch_key_id) as theirs:
            assert theirs is None
    with other.leased(job.batch_key_id) as theirs_after:
        assert theirs_after is not None


def test_two_threads_of_one_process_cannot_both_hold_a_job(registry: Registry) -> None:
    job = registry.register("1", "batch_threads")
    held = threading.Event()
    release = threading.Event()

    def reconciler() -> None:
        with registry.leased(job.batch_key_id) as leased:
            assert leased is not None
            held.set()
            release.wait(10)

    thread = threading.Thread(target=reconciler)
    thread.start()
    held.wait(10)
    try:
        with registry.leased(job.batch_key_id) as fetch_api:
            assert fetch_api is None
        # The refused claim released nothing: the reconciler still holds the job.
        assert registry.get(job.task_id).lease_owner is not None
        with registry.leased(job.batch_key_id) as again:
            assert again is None
    finally:
        release.set()
        thread.join()


def test_a_lease_is_renewed_while_the_work_outlasts_its_duration(engine: Engine) -> None:
    migrate(engine)
    short = Registry(session_factory(engine), lease_seconds=1)
    other = Registry(session_factory(engine), lease_seconds=1)
    job = short.register("1", "batch_long_sync")

    with short.leased(job.batch_key_id) as mine:
        assert mine is not None
        time.sleep(2.5)  # a sync that takes longer than the lease's initial 1 s
        with other.leased(job.batch_key_id) as theirs:
            assert theirs is None
    with other.leased(job.batch_key_id) as after:
        assert after is not None


def test_an_expired_lease_can_be_taken_over(registry: Registry, engine: Engine) -> None:
    job = registry.register("1", "batch_crashed")
    crashed = Registry(session_factory(engine), lease_seconds=60)
    with crashed.leased(job.batch_key_id):
        registry.update(job.batch_key_id, lease_until=registry.get(job.task_id).created_at)
        with registry.leased(job.batch_key_id) as taken:
            assert taken is not None


def test_an_unknown_task_id_is_not_found(registry: Registry) -> None:
    with pytest.raises(JobNotFound):
        registry.get("qa_0_0")


def test_migrations_turn_old_integer_influencer_ids_into_strings(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text(OLD_TABLE))
        connection.execute(text(OLD_ROW))

    migrate(engine)
    adopted = Registry(session_factory(engine), lease_seconds=60)

    assert adopted.get("qa_7_1700000000").influencer_id == "7"


def test_a_uuid_influencer_id_makes_a_task_id_that_round_trips(registry: Registry) -> None:
    uuid_job = registry.register("8c1f2d4e-1b2a-4c3d-9e8f-0a1b2c3d4e5f", "batch_uuid")
    assert uuid_job.task_id.startswith("qa_8c1f2d4e-1b2a-4c3d-9e8f-0a1b2c3d4e5f_")
    fresh = registry.get(uuid_job.task_id)
    assert fresh.influencer_id == "8c1f2d4e-1b2a-4c3d-9e8f-0a1b2c3d4e5f"


def test_migrations_move_the_request_count_out_of_total_qa_pairs(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text(OLD_TABLE))
        connection.execute(text(OLD_ROW))

    migrate(engine)

    job = Registry(session_factory(engine), lease_seconds=60).get("qa_7_1700000000")
    assert (job.request_count, job.total_qa_pairs, job.generated_qa_pairs) == (50, 48, 48)


def test_an_attempt_is_counted_with_the_values_it_sets(registry: Registry) -> None:
    job = registry.register("1", "batch_attempts")

    registry.update(job.batch_key_id, Attempt.POLL, provider_status="in_progress")
    registry.update(job.batch_key_id, Attempt.POLL)
    registry.update(job.batch_key_id, Attempt.REPAIR, last_error="raw: missing")

    counted = registry.get(job.task_id)
    assert (counted.poll_attempts, counted.sync_attempts, counted.repair_attempts) == (2, 0, 1)
    assert (counted.provider_status, counted.last_error) == ("in_progress", "raw: missing")
