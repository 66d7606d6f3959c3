"""Find a job's objects (at the recorded key, the standard key or a legacy key) and check them:
SHA-256 against the registry, and for the processed JSON that it parses and holds as many pairs
as the registry says."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from qa_sync.layout import (
    PROCESSED_CONTENT_TYPE,
    RAW_CONTENT_TYPE,
    JobLayout,
    key_from_recorded,
)
from qa_sync.objects import layout_of
from qa_sync.processed import ProcessedUnreadable, count_pairs
from qa_sync.registry.models import BatchJob
from qa_sync.report import CONTENT_PROBLEMS, Finding, ObjectKind, Problem
from qa_sync.spool import Spool
from qa_sync.storage import Storage

CONTENT_TYPES = {ObjectKind.PROCESSED: PROCESSED_CONTENT_TYPE, ObjectKind.RAW: RAW_CONTENT_TYPE}


@dataclass
class ObjectCheck:
    kind: ObjectKind
    standard_key: str
    key: str | None = None
    """Where the object was found (None: nowhere)."""
    body: Spool | None = None
    problems: dict[Problem, str | None] = field(default_factory=dict)
    pairs: int | None = None
    """Pairs counted in a processed JSON that parses."""

    @property
    def content_ok(self) -> bool:
        return self.body is not None and not CONTENT_PROBLEMS & self.problems.keys()

    @property
    def headers_incomplete(self) -> bool:
        return Problem.INCOMPLETE_HEADERS in self.problems

    @property
    def at_legacy_key(self) -> bool:
        return Problem.LEGACY_KEY in self.problems

    def findings(self, task_id: str) -> list[Finding]:
        return [
            Finding(task_id=task_id, object=self.kind, problem=problem, key=self.key, detail=detail)
            for problem, detail in self.problems.items()
        ]

    def replace_body(self, body: Spool, key: str) -> None:
        """After a repair: the object as it now is at `key`, with nothing wrong with it."""
        if self.body is not None and self.body is not body:
            self.body.close()
        self.body, self.key = body, key
        self.problems = {}

    def take_body(self) -> Spool:
        """Hand the body over to the caller, who closes it."""
        assert self.body is not None
        body, self.body = self.body, None
        return body

    def close(self) -> None:
        if self.body is not None:
            self.body.close()


class Inspector:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def check_raw(self, job: BatchJob) -> ObjectCheck:
        layout = layout_of(job)
        check = self._locate(
            ObjectKind.RAW,
            layout.raw_key,
            self._recorded(job.raw_key),
            lambda: layout.legacy_raw_keys(self._task_folder(layout)),
        )
        if check.body is not None:
            _compare(check, job.raw_sha256, job.raw_key)
            _compare_headers(check)
        return check

    def check_processed(self, job: BatchJob) -> ObjectCheck:
        layout = layout_of(job)
        check = self._locate(
            ObjectKind.PROCESSED,
            layout.processed_key,
            self._recorded(job.processed_key),
            lambda: layout.legacy_processed_keys(self._task_folder(layout)),
        )
        if check.body is None:
            return check
        _compare(check, job.processed_sha256, job.processed_key)
        try:
            check.pairs = count_pairs(check.body)
        except ProcessedUnreadable as error:
            check.problems[Problem.UNPARSEABLE] = str(error)
            return check
        expected = job.generated_qa_pairs
        if expected is not None and check.pairs != expected:
            check.problems[Problem.COUNT_MISMATCH] = (
                f"{check.pairs} pairs, registry says {expected}"
            )
        elif expected is None and not check.problems:
            check.problems[Problem.UNRECORDED] = "no pair count in the registry"
        _compare_headers(check)
        return check

    def _recorded(self, value: str | None) -> str | None:
        return key_from_recorded(value, self._storage.bucket) if value else None

    def _task_folder(self, layout: JobLayout) -> list[str]:
        return self._storage.list_keys(layout.task_folder)

    def _locate(
        self,
        kind: ObjectKind,
        standard_key: str,
        recorded_key: str | None,
        legacy_keys: Callable[[], Iterable[str]],
    ) -> ObjectCheck:
        """The first of recorded, standard and legacy keys that holds an object (the legacy
        keys are listed only when neither of the others has one)."""
        check = ObjectCheck(kind=kind, standard_key=standard_key)
        for key in _unique([recorded_key, standard_key]):
            if self._take(check, key):
                break
        else:
            for key in legacy_keys():
                if self._take(check, key):
                    break
            else:
                check.problems[Problem.MISSING] = None
                return check
        if check.key != standard_key:
            check.problems[Problem.LEGACY_KEY] = f"not at {standard_key}"
        return check

    def _take(self, check: ObjectCheck, key: str) -> bool:
        body = self._storage.download(key)
        if body is None:
            return False
        check.body, check.key = body, key
        return True


def _compare(check: ObjectCheck, recorded_sha256: str | None, recorded_key: str | None) -> None:
    assert check.body is not None
    if recorded_sha256 is not None and check.body.sha256 != recorded_sha256:
        check.problems[Problem.CHECKSUM_MISMATCH] = (
            f"sha256 {check.body.sha256}, registry says {recorded_sha256}"
        )
    elif not check.at_legacy_key and (recorded_sha256 is None or recorded_key != check.key):
        check.problems[Problem.UNRECORDED] = "registry lacks the exact key or checksum"


def _compare_headers(check: ObjectCheck) -> None:
    """Only for good bytes at the standard key: anything else is written anew anyway."""
    if not check.content_ok or check.at_legacy_key:
        return
    assert check.body is not None
    stored = check.body.stored_as
    expected = (CONTENT_TYPES[check.kind], check.body.sha256)
    if stored is None or (stored.content_type, stored.sha256_metadata) != expected:
        check.problems[Problem.INCOMPLETE_HEADERS] = (
            f"content type {stored and stored.content_type}, "
            f"sha256 metadata {stored and stored.sha256_metadata}"
        )


def _unique(keys: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(key for key in keys if key))
