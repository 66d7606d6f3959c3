"""Builds qa-sync's parts from its settings, once, for the server and for each CLI command."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import openai
from llm_common.aws import aws_client
from sqlalchemy import Engine

from qa_sync.fetch import Fetcher
from qa_sync.objects import JobObjects
from qa_sync.provider import Provider, openai_client
from qa_sync.reconcile.checks import Inspector
from qa_sync.reconcile.repair import JobReconciler
from qa_sync.reconcile.run import Reconciler
from qa_sync.registry.database import create_registry_engine, migrate, session_factory
from qa_sync.registry.jobs import Registry
from qa_sync.settings import QaSyncSettings
from qa_sync.storage import RetryPolicy, Storage, Transfer
from qa_sync.sync import Syncer
from qa_sync.webhooks import WebhookReceiver

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass
class Components:
    settings: QaSyncSettings
    engine: Engine
    registry: Registry
    storage: Storage
    syncer: Syncer
    reconciler: Reconciler
    fetcher: Fetcher
    webhooks: WebhookReceiver

    def close(self) -> None:
        self.engine.dispose()


def build_components(
    settings: QaSyncSettings,
    *,
    s3: "S3Client | None" = None,
    client: openai.OpenAI | None = None,
) -> Components:
    """Everything wired together; `s3` and `client` replace the ones built from settings."""
    engine = create_registry_engine(settings.database_url)
    if settings.migrate_on_start:
        migrate(engine)
    registry = Registry(session_factory(engine), settings.lease_seconds)
    storage = Storage(
        s3 or aws_client("s3", settings.aws_region),
        settings.qa_bucket,
        RetryPolicy(settings.s3_max_attempts, settings.s3_retry_base_seconds),
        Transfer(
            settings.s3_multipart_threshold_bytes,
            settings.s3_part_bytes,
            settings.spool_memory_bytes,
        ),
    )
    client = client or openai_client(settings)
    objects = JobObjects(Provider(client), storage, settings.spool_memory_bytes)
    inspector = Inspector(storage)
    syncer = Syncer(registry, objects)
    jobs = JobReconciler(registry, objects, inspector)
    secret = settings.openai_webhook_secret
    return Components(
        settings=settings,
        engine=engine,
        registry=registry,
        storage=storage,
        syncer=syncer,
        reconciler=Reconciler(registry, jobs),
        fetcher=Fetcher(registry, inspector, jobs),
        webhooks=WebhookReceiver(client, secret.get_secret_value() if secret else None, registry),
    )
