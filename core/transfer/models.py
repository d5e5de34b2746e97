"""Request and response models of export, import and snapshots (REST and the OpenAPI spec)."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from pydantic import Field

from core.memory.models import Out, Strict


class ExportQuery(Strict):
    include_archived: bool = Field(
        True, description="Archived and soft-deleted memories too (false: active ones only)."
    )


class ImportQuery(Strict):
    strategy: Literal["merge", "skip_existing", "replace"] = Field(
        "merge",
        description="For ids the brain has: merge (the import wins), skip_existing (the brain "
        "wins) or replace (the brain is emptied first; owners only; one transaction).",
    )
    remap_ids: bool = Field(False, description="Give every record a new id (references follow).")
    gate: bool = Field(
        False,
        description="Screen each memory with the brain's write gate: a restatement reinforces "
        "the memory it restates, instructions and boilerplate go to quarantine.",
    )


class KindCounts(Out):
    read: int
    imported: int
    updated: int
    skipped: int
    skipped_by_reason: dict[str, int]


class ImportResult(Out):
    brain_id: str
    strategy: str
    remap_ids: bool
    read: int
    imported: int
    updated: int
    skipped: int
    remapped: int
    batches: int
    complete: bool = Field(description="The stream ended with its `end` record.")
    by_kind: dict[str, KindCounts]
    skipped_samples: list[dict[str, Any]]


class SnapshotIn(Strict):
    label: str = Field(min_length=1, max_length=200)
    note: str | None = Field(None, max_length=2000)
    include_archived: bool = Field(
        False, description="Archived and soft-deleted memories too (default: active ones only)."
    )


class RestoreIn(Strict):
    mode: Literal["merge", "replace"] = Field(
        "merge",
        description="merge: the snapshot's records come back, later ones stay; replace: the "
        "brain becomes exactly the snapshot.",
    )


class SnapshotListQuery(Strict):
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None


class Snapshot(Out):
    id: str
    label: str
    note: str | None
    include_archived: bool
    format_version: int
    encoding: str
    storage: Literal["database", "s3"]
    size_bytes: int
    sha256: str
    memory_count: int
    link_count: int
    record_count: int
    created_by: str | None
    created_at: str


class SnapshotPage(Out):
    results: list[Snapshot]
    next_cursor: str | None


class RestoreResult(Out):
    snapshot: Snapshot
    mode: str
    cleared: dict[str, int]
    purged_left_out: int = Field(
        description="Memories in the snapshot purged since it was taken: left out, a purge "
        "is for good."
    )
    erased_users_left_out: int = Field(
        description="End users erased since the snapshot was taken: their memories left out."
    )
    report: ImportResult


class SnapshotDeleted(Out):
    id: str
    deleted: bool


# -- Typed records ------------------------------------------------------------------------------
# What core/transfer returns: the JSON a route sends, field for field. The `Out` models above
# document the same replies; tests/unit/test_records.py holds the two to the same fields.


class KindCountsRecord(TypedDict):
    read: int
    imported: int
    updated: int
    skipped: int
    skipped_by_reason: dict[str, int]


class SkipSampleRecord(TypedDict):
    """A skipped record, one of the first few an import skipped."""

    kind: str
    id: Any  # the record's id as the file gave it: any JSON value, or none at all
    reason: str
    message: NotRequired[str]


class ImportRecord(TypedDict):
    brain_id: str
    strategy: Literal["merge", "skip_existing", "replace"]
    remap_ids: bool
    read: int
    imported: int
    updated: int
    skipped: int
    remapped: int
    batches: int
    complete: bool
    by_kind: dict[str, KindCountsRecord]
    skipped_samples: list[SkipSampleRecord]


class SnapshotRecord(TypedDict):
    id: str
    label: str
    note: str | None
    include_archived: bool
    format_version: int
    encoding: str
    storage: Literal["database", "s3"]
    size_bytes: int
    sha256: str
    memory_count: int
    link_count: int
    record_count: int
    created_by: str | None
    created_at: str


class SnapshotPageRecord(TypedDict):
    results: list[SnapshotRecord]
    next_cursor: str | None


class RestoreRecord(TypedDict):
    snapshot: SnapshotRecord
    mode: str
    cleared: dict[str, int]
    purged_left_out: int
    erased_users_left_out: int
    report: ImportRecord


class SnapshotDeletedRecord(TypedDict):
    id: str
    deleted: bool


class ImportSkipRecord(SkipSampleRecord):
    """A record `mnemo import --from` skipped, named as its source knew it too."""

    source_id: Any


class SourceSkipRecord(TypedDict):
    """An item of the other system's that its importer could not turn into a record."""

    kind: str
    id: str
    reason: str


class KindTallyRecord(TypedDict):
    imported: int
    updated: int


# `mnemo import --from ... --json`: what a migration from another system did. The functional
# form because one key is `from`, a Python keyword.
MigrationRecord = TypedDict(
    "MigrationRecord",
    {
        "from": str,
        "source": str,
        "brain": str,
        "strategy": str,
        "read": int,
        "records": int,
        "imported": int,
        "updated": int,
        "by_kind": dict[str, KindTallyRecord],
        "skipped": int,
        "skipped_by_reason": dict[str, int],
        "source_skips": list[SourceSkipRecord],
        "import_skips": list[ImportSkipRecord],
    },
)
