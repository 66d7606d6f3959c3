"""qa-sync's fixtures: the registry on SQLite and PostgreSQL, a bucket in moto, the fake
OpenAI Batch/Files API on a real HTTP port, and the service's components wired to them."""

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import psycopg
import pytest
from devstack.fakes.fake_batch_api import FakeBatchApi, create_app
from devstack.serving import BackgroundServer
from qa_sync.components import Components, build_components
from qa_sync.settings import MIB, QaSyncSettings

from tests.support.qa_sync import API_KEY, WEBHOOK_SECRET

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

AWS_REGION = "us-east-1"
POSTGRES_CONNINFO = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=3"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PROVIDER_KEY = "sk-test-qa-sync"


@pytest.fixture(scope="session")
def batch_api_server() -> Iterator[tuple[FakeBatchApi, str]]:
    api = FakeBatchApi(api_key=PROVIDER_KEY)
    with BackgroundServer(create_app(api)) as server:
        yield api, server.url


@pytest.fixture
def provider(batch_api_server: tuple[FakeBatchApi, str]) -> FakeBatchApi:
    """The fake provider, emptied for this test."""
    api, _ = batch_api_server
    api.reset()
    return api


@pytest.fixture
def provider_url(batch_api_server: tuple[FakeBatchApi, str]) -> str:
    return f"{batch_api_server[1]}/v1"


def _postgres_schema() -> Iterator[str]:
    """A schema of its own in the `test` database for one test, dropped afterwards."""
    try:
        admin = psycopg.connect(POSTGRES_CONNINFO, autocommit=True)
    except psycopg.OperationalError as error:
        reason = f"PostgreSQL on 127.0.0.1:5432 does not answer ({error})".strip()
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1 and {reason}")
        pytest.skip(reason)
    schema = f"qa_sync_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('registry') / 'qa-sync.db'}"
    else:
        yield from _postgres_schema()


@pytest.fixture
def s3(aws_env: str) -> "S3Client":
    return boto3.client("s3", endpoint_url=aws_env, region_name=AWS_REGION)


@pytest.fixture
def bucket(s3: "S3Client") -> str:
    name = f"qa-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def settings(database_url: str, bucket: str, provider_url: str) -> QaSyncSettings:
    return QaSyncSettings(
        database_url=database_url,
        qa_bucket=bucket,
        aws_region=AWS_REGION,
        openai_base_url=provider_url,
        openai_api_key=PROVIDER_KEY,
        openai_webhook_secret=WEBHOOK_SECRET,
        qa_sync_api_keys=[API_KEY],
        openai_max_retries=0,
        poll_interval_seconds=0.2,
        s3_retry_base_seconds=0.01,
        s3_multipart_threshold_bytes=5 * MIB,
        s3_part_bytes=5 * MIB,
        spool_memory_bytes=64 * 1024,
    )


@pytest.fixture
def qa(settings: QaSyncSettings, aws_env: str) -> Iterator[Components]:
    """The service's parts, built as `python -m qa_sync` builds them (migrations included)."""
    components = build_components(settings)
    yield components
    components.close()
