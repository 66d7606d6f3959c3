"""The QA bucket: uploads with SHA-256 checksums, streamed downloads, retries with backoff.

Every object carries its full SHA-256 twice: as S3's `ChecksumSHA256` (S3 rejects a body that
does not match it; multipart uploads send one per part) and as `x-amz-meta-sha256` (hex of the
whole object, which a multipart object has no S3 checksum for). The registry keeps the same hex
digest; verification re-hashes the bytes S3 returns and compares with the registry.

botocore already retries each request a few times; the loop here retries whole operations with
exponential backoff and jitter, which also covers what botocore does not retry: a download
that breaks halfway through its body.
"""

import base64
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
)

from qa_sync.spool import COPY_CHUNK_BYTES, Spool, StoredHeaders

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)
T = TypeVar("T")

SHA256_METADATA = "sha256"
_RETRYABLE_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling"}
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class StorageError(Exception):
    """S3 refused, or kept failing after every retry."""


class BucketMissing(StorageError):
    """QA_BUCKET does not exist: qa-sync never creates it (it needs its lifecycle rule, see
    k8s/cluster); `make run` creates it locally."""

    def __init__(self, bucket: str) -> None:
        super().__init__(
            f"bucket {bucket!r} (QA_BUCKET) does not exist: create it, with the lifecycle rule "
            "in k8s/cluster, before starting qa-sync"
        )


@dataclass(frozen=True)
class StoredObject:
    key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    cap_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter before retry number `attempt` (1, 2, ...)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Transfer:
    multipart_threshold_bytes: int
    part_bytes: int
    spool_memory_bytes: int


class Storage:
    def __init__(
        self, client: "S3Client", bucket: str, retry: RetryPolicy, transfer: Transfer
    ) -> None:
        self.client = client
        self.bucket = bucket
        self._retry = retry
        self._transfer = transfer

    def put(self, key: str, body: Spool, content_type: str) -> StoredObject:
        if body.size >= self._transfer.multipart_threshold_bytes:
            self._put_multipart(key, body, content_type)
        else:
            self._retrying(f"put {key}", partial(self._put_single, key, body, content_type))
        return StoredObject(key=key, sha256=body.sha256, size=body.size)

    def download(self, key: str) -> Spool | None:
        """The object's body (hashed as it arrives), or None if there is no such object."""
        return self._retrying(f"get {key}", partial(self._download_once, key))

    def list_keys(self, prefix: str) -> list[str]:
        def list_once() -> list[str]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            return [item["Key"] for page in pages for item in page.get("Contents", [])]

        return self._retrying(f"list {prefix}", list_once)

    def delete(self, key: str) -> None:
        self._retrying(
            f"delete {key}", partial(self.client.delete_object, Bucket=self.bucket, Key=key)
        )

    def check_bucket(self) -> None:
        """Raises `BucketMissing` when the bucket does not exist, `StorageError` when S3 fails."""
        try:
            self._retrying("head bucket", partial(self.client.head_bucket, Bucket=self.bucket))
        except StorageError as error:
            cause = error.__cause__
            if isinstance(cause, ClientError) and _error_code(cause) in _MISSING_CODES:
                raise BucketMissing(self.bucket) from cause
            raise

    def _put_single(self, key: str, body: Spool, content_type: str) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body.reader(),
            ContentType=content_type,
            ChecksumSHA256=_b64_sha256_of_hex(body.sha256),
            Metadata={SHA256_METADATA: body.sha256},
        )

    def _put_multipart(self, key: str, body: Spool, content_type: str) -> None:
        upload_id = self._retrying(
            f"start multipart {key}",
            partial(
                self.client.create_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
                Metadata={SHA256_METADATA: body.sha256},
            ),
        )["UploadId"]
        try:
            parts = self._upload_parts(key, upload_id, body)
            self._retrying(
                f"complete multipart {key}",
                partial(
                    self.client.complete_multipart_upload,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        except BaseException:
            self._abort_multipart(key, upload_id)
            raise

    def _upload_parts(self, key: str, upload_id: str, body: Spool) -> list["CompletedPartTypeDef"]:
        # One part in memory at a time: parts go up in order, each retried on its own.
        parts: list[CompletedPartTypeDef] = []
        for number, chunk in enumerate(body.chunks(self._transfer.part_bytes), start=1):
            checksum = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
            response = self._retrying(
                f"upload part {number} of {key}",
                partial(
                    self.client.upload_part,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    ChecksumSHA256=checksum,
                ),
            )
            parts.append(
                {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}
            )
        return parts

    def _abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, HTTPClientError):
            # The upload failed already; a leftover is removed by the bucket's lifecycle rule.
            log.warning("could not abort multipart upload %s of %s", upload_id, key)

    def _download_once(self, key: str) -> Spool | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _error_code(error) in _MISSING_CODES:
                return None
            raise
        spool = Spool(self._transfer.spool_memory_bytes)
        spool.stored_as = StoredHeaders(
            content_type=response.get("ContentType"),
            sha256_metadata=response.get("Metadata", {}).get(SHA256_METADATA),
        )
        try:
            spool.write_all(response["Body"].iter_chunks(COPY_CHUNK_BYTES))
        except BaseException:
            spool.close()
            raise
        return spool

    def _retrying(self, what: str, operation: Callable[[], T]) -> T:
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                return operation()
            except (
                ClientError,
                HTTPClientError,
                IncompleteReadError,
                ResponseStreamingError,
            ) as error:
                if not _retryable(error):
                    raise StorageError(f"{what}: {error}") from error
                if attempt == self._retry.max_attempts:
                    raise StorageError(f"{what}: failed {attempt} times: {error}") from error
                delay = self._retry.delay(attempt)
                log.warning("%s failed (%s); retry %d in %.2fs", what, error, attempt, delay)
                time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")


def _retryable(error: Exception) -> bool:
    if not isinstance(error, ClientError):
        return True  # connection drops, timeouts, bodies cut short
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status >= 500 or status == 429 or _error_code(error) in _RETRYABLE_CODES


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _b64_sha256_of_hex(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()
