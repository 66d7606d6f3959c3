"""qa-sync's HTTP side: the OpenAI webhook, job status, QA pairs for fine-tuning, health.

Every answer is the envelope (llm_common.envelope). The job and QA-pair APIs return an
influencer's data, so they take an API key; the webhook proves itself with its signature. The
routes are routers per resource (`routes/`), with typed dependencies (`deps.py`) on what
`create_app` puts on `app.state`, as ingest's are.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from llm_common.envelope import install_envelope_handlers
from llm_common.telemetry.web import instrument_fastapi, mount_metrics

from qa_sync.background import BackgroundWork
from qa_sync.components import Components
from qa_sync.routes import health, jobs, webhooks
from qa_sync.storage import BucketMissing, StorageError

log = logging.getLogger(__name__)


def create_app(components: Components, *, background: bool = True) -> FastAPI:
    """The app; `background=False` leaves out the sync worker, poller and reconciler."""
    work = BackgroundWork(components)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await asyncio.to_thread(components.storage.check_bucket)
        except BucketMissing as error:
            # Not fatal: /readyz says the same until the bucket exists, then the pod is ready.
            log.error("%s", error)
        except StorageError as error:
            log.warning("S3 not reachable at start-up: %s", error)
        if background:
            work.start()
        yield
        await work.stop()

    app = FastAPI(title="qa-sync", lifespan=lifespan)
    app.state.components = components
    app.state.work = work
    app.include_router(webhooks.router)
    app.include_router(jobs.router)
    app.include_router(health.router)
    install_envelope_handlers(app)
    instrument_fastapi(app)
    mount_metrics(app)
    return app
