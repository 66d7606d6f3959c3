"""The batch provider through the official `openai` client: any OpenAI-compatible Batch/Files API.

Files are streamed (`with_streaming_response`): a 200 MB output file never sits in memory.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import openai
from openai.types import Batch

from qa_sync.settings import QaSyncSettings
from qa_sync.spool import COPY_CHUNK_BYTES, Spool

TERMINAL_BATCH_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})


class ProviderUnavailable(Exception):
    """The provider is unreachable or failing (connection, timeout, 429, 5xx): try later."""


class ProviderRefused(Exception):
    """The provider answered, and the answer is no (unknown batch or file, bad key)."""


def openai_client(settings: QaSyncSettings) -> openai.OpenAI:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    secret = settings.openai_webhook_secret
    return openai.OpenAI(
        # OpenAI-compatible servers that need no key accept any; the client insists on one.
        api_key=key or "not-configured",
        base_url=settings.openai_base_url,
        webhook_secret=secret.get_secret_value() if secret else None,
        max_retries=settings.openai_max_retries,
        timeout=settings.openai_timeout_seconds,
    )


class Provider:
    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client

    def retrieve_batch(self, batch_id: str) -> Batch:
        with _translated_errors(f"batch {batch_id}"):
            return self.client.batches.retrieve(batch_id)

    def copy_results(self, batch: Batch, target: Spool) -> None:
        """The batch's output file, then its error file, byte for byte (the raw results)."""
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            if not target.ends_with_newline:
                target.write(b"\n")
            self.copy_file(file_id, target)

    def copy_file(self, file_id: str, target: Spool) -> None:
        with (
            _translated_errors(f"file {file_id}"),
            self.client.files.with_streaming_response.content(file_id) as response,
        ):
            target.write_all(response.iter_bytes(COPY_CHUNK_BYTES))


@contextmanager
def _translated_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (openai.APIConnectionError, httpx2.TransportError) as error:
        raise ProviderUnavailable(f"{what}: provider unreachable: {error}") from error
    except openai.APIStatusError as error:
        if error.status_code == 429 or error.status_code >= 500:
            raise ProviderUnavailable(f"{what}: provider answered {error.status_code}") from error
        raise ProviderRefused(f"{what}: provider answered {error.status_code}: {error}") from error
