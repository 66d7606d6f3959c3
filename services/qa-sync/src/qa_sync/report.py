"""What a reconcile run checked, found and fixed: the typed report the CLI prints as JSON."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from qa_sync.registry.models import Verification


class ObjectKind(StrEnum):
    PROCESSED = "processed"
    RAW = "raw"


class Problem(StrEnum):
    MISSING = "missing"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    UNPARSEABLE = "unparseable"
    COUNT_MISMATCH = "count_mismatch"
    """The processed JSON holds another number of pairs than the registry says."""
    LEGACY_KEY = "legacy_key"
    UNRECORDED = "unrecorded"
    """The object is fine, but the registry lacks its exact key, checksum or pair count."""
    INCOMPLETE_HEADERS = "incomplete_headers"
    """The bytes are fine, but S3 holds the object without its content type or its sha256
    metadata (an old system's upload): it is written again with both."""


# Problems with the bytes themselves: the object has to be rebuilt or fetched again.
CONTENT_PROBLEMS = frozenset(
    {Problem.MISSING, Problem.CHECKSUM_MISMATCH, Problem.UNPARSEABLE, Problem.COUNT_MISMATCH}
)


class Action(StrEnum):
    MOVED_FROM_LEGACY_KEY = "moved_from_legacy_key"
    REBUILT_FROM_RAW = "rebuilt_from_raw"
    REFETCHED_FROM_PROVIDER = "refetched_from_provider"
    RECORDED = "recorded"
    HEADERS_REWRITTEN = "headers_rewritten"


class Finding(BaseModel):
    task_id: str
    object: ObjectKind
    problem: Problem
    key: str | None
    detail: str | None = None


class Fix(BaseModel):
    task_id: str
    object: ObjectKind
    action: Action
    key: str
    from_key: str | None = None


class Unrepaired(BaseModel):
    task_id: str
    object: ObjectKind | None
    reason: str


class JobReport(BaseModel):
    task_id: str
    objects_checked: int = 0
    findings: list[Finding] = Field(default_factory=list)
    fixes: list[Fix] = Field(default_factory=list)
    unrepaired: list[Unrepaired] = Field(default_factory=list)

    @property
    def verification(self) -> Verification:
        if self.unrepaired or (self.findings and not self.fixes):
            return Verification.DAMAGED
        return Verification.REPAIRED if self.fixes else Verification.OK

    def fixed(self, kind: ObjectKind, action: Action) -> bool:
        return any(fix.object == kind and fix.action == action for fix in self.fixes)


class ReconcileReport(BaseModel):
    repair: bool
    """False for `verify`: problems are reported, nothing is changed."""
    started_at: datetime
    finished_at: datetime | None = None
    jobs_checked: int = 0
    jobs_ok: int = 0
    objects_checked: int = 0
    jobs_busy: list[str] = Field(default_factory=list)
    """Jobs another process held (syncing or repairing them); checked on the next run."""
    findings: list[Finding] = Field(default_factory=list)
    fixes: list[Fix] = Field(default_factory=list)
    unrepaired: list[Unrepaired] = Field(default_factory=list)

    def add(self, job: JobReport) -> None:
        self.jobs_checked += 1
        self.jobs_ok += job.verification == Verification.OK
        self.objects_checked += job.objects_checked
        self.findings += job.findings
        self.fixes += job.fixes
        self.unrepaired += job.unrepaired

    @property
    def healthy(self) -> bool:
        """Nothing is left broken (in verify mode: nothing was found)."""
        return not self.unrepaired and (self.repair or not self.findings)
