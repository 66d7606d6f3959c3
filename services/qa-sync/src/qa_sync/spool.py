"""A temporary object body: held in memory up to a limit, then on disk, hashed as it is written.

Every object qa-sync moves (provider file → S3, S3 → processed JSON → S3, S3 → HTTP client)
goes through one of these, so memory stays flat whatever the size of the batch.
"""

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Self

COPY_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StoredHeaders:
    """What S3 says about an object besides its bytes: a reconcile makes both right."""

    content_type: str | None
    sha256_metadata: str | None


class Spool:
    def __init__(self, memory_bytes: int) -> None:
        # The spool owns the file and closes it in close().
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=memory_bytes, mode="w+b"
        )
        self._sha256 = hashlib.sha256()
        self.size = 0
        self.ends_with_newline = True
        """Whether what was written so far ends a line (or nothing was written)."""
        self.stored_as: StoredHeaders | None = None
        """How S3 holds the object this spool was downloaded from (None: not downloaded)."""

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._file.write(data)
        self._sha256.update(data)
        self.size += len(data)
        self.ends_with_newline = data.endswith(b"\n")

    def write_all(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def copy_from(self, source: "Spool") -> None:
        self.write_all(source.chunks())

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of everything written."""
        return self._sha256.hexdigest()

    def reader(self) -> IO[bytes]:
        """The body from its start (one reader at a time: they share the position)."""
        self._file.seek(0)
        return self._file

    def chunks(self, size: int = COPY_CHUNK_BYTES) -> Iterator[bytes]:
        reader = self.reader()
        while chunk := reader.read(size):
            yield chunk

    def lines(self) -> Iterator[bytes]:
        yield from self.reader()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
