"""Request and response models of curation: conflicts, merge, aliases, consolidation, erasure
and the health report (shared by REST, MCP and the OpenAPI spec)."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from pydantic import ConfigDict, Field, model_validator

from core.memory.models import (
    Actor,
    Memory,
    MemoryFilters,
    MemoryRecord,
    MemoryState,
    MemoryType,
    Name,
    Out,
    Score,
    Strict,
)

ConflictStatus = Literal["needs_review", "resolved", "superseded", "dismissed"]
ConflictKind = Literal["key", "link", "value"]
Id = Name
Note = str


class ConflictListQuery(Strict):
    status: ConflictStatus | None = None
    kind: ConflictKind | None = None
    memory_id: Id | None = Field(None, description="Only conflicts this memory is part of.")
    user_id: Name | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None


class DetectIn(Strict):
    memory_id: Id | None = Field(
        None, description="Check this memory against its neighbours; else the newest changed."
    )
    user_id: Name | None = None
    limit: int = Field(100, ge=1, le=500, description="Memories checked (newest changed first).")


class ResolveIn(Actor):
    winner_id: Id = Field(description="The memory to keep: one of the conflict's two.")
    mode: Literal["archive", "demote"] = Field(
        "archive", description="archive the loser, or leave it active and demoted in search"
    )
    note: Note | None = Field(None, max_length=2000)


class DismissIn(Actor):
    note: Note | None = Field(None, max_length=2000)


class ConflictOut(Out):
    id: str
    pair_key: str
    a_id: str
    b_id: str
    user_id: str | None
    kind: ConflictKind
    reason: str
    detail: dict[str, Any]
    status: ConflictStatus
    canonical_id: str | None
    mode: str | None
    note: str | None
    created_at: str
    updated_at: str
    resolved_at: str | None
    a: Memory | None
    b: Memory | None


class ConflictPage(Out):
    results: list[ConflictOut]
    next_cursor: str | None


class DetectOut(Out):
    results: list[ConflictOut]
    scanned: int


class MergeIn(Actor):
    ids: list[Id] = Field(max_length=100, description="2 to 20 memories of one user.")
    content: str | None = Field(
        None, min_length=1, description="The merged content; by default the contents joined."
    )
    title: Name | None = None
    into_id: Id | None = Field(
        None, description="Merge into this one of `ids` (keeping its id) instead of a new memory."
    )


class MergeOut(Out):
    memory: Memory
    merged_ids: list[str]
    links_moved: int
    links_dropped: int


class AliasIn(Actor):
    canonical_id: Id
    alias_ids: list[Id] = Field(min_length=1, max_length=100)
    archive: bool = Field(False, description="Archive the aliases, so only the canonical is found.")
    note: Note | None = Field(None, max_length=2000)
    confidence: Score = 0.9


class AliasOut(Out):
    id: str
    canonical_memory_id: str
    alias_memory_id: str
    note: str | None
    confidence: float
    created_at: str
    updated_at: str
    memory: Memory | None


class AliasesOut(Out):
    canonical_id: str
    results: list[AliasOut]


class AliasDeleted(Out):
    id: str
    deleted: bool


class ConsolidateIn(Actor):
    user_id: Name | None = None
    threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Cosine of near-duplicates; default: the brain policy's.",
    )
    dry_run: bool = Field(True, description="List the groups only; false merges them.")
    cursor: str | None = None


class DuplicateGroup(Out):
    ids: list[str]
    keep_id: str
    reason: Literal["same_content", "similar"]
    similarity: float | None
    memories: list[Memory]
    merged: Memory | None = None


class ConsolidateOut(Out):
    results: list[DuplicateGroup]
    applied: bool
    next_cursor: str | None


# -- Erasure and the health report (REST and MCP) --------------------------------------------


class EraseQuery(Strict):
    confirm: bool = Field(description="Must be true: an erasure cannot be undone.")


class EraseIn(Strict):
    user_id: Name
    confirm: bool = Field(description="Must be true: an erasure cannot be undone.")


class ErasureReceipt(Out):
    id: str
    subject: str = Field(description="SHA-256 of the user id salted with the brain; not the id")
    status: Literal["running", "complete"] = Field(
        description="running: stopped by its time budget; ask again to finish"
    )
    counts: dict[str, int] = Field(description="Rows erased (or tombstoned) per table")
    total: int
    digest: str = Field(description="SHA-256 chained over every batch's memory ids and counts")
    batches: int
    requested_by: str | None
    started_at: str
    completed_at: str | None
    compaction: dict[str, Any] | None = Field(
        default=None,
        description="What takes the erased rows' bytes out of the store's files, once the "
        "erasure completed. `status` done: SQLite merged the full-text index and checkpointed "
        "the WAL within the request; PostgreSQL VACUUMed the tables it touched (`vacuumed`; "
        "any `left_to_autovacuum` failed, with the error's kind), and `complete` is false when "
        "any step failed. `status` pending (PostgreSQL): the scheduled maintenance run VACUUMs "
        "them (a VACUUM can outlast a request); read the receipt again to see it done.",
    )


class ErasurePage(Out):
    results: list[ErasureReceipt]


class HealthQuery(Strict):
    user_id: Name | None = None


class Cluster(Out):
    ids: list[str] = Field(description="Memories of one owner and fact key that restate each other")
    user_id: str | None
    preview: str = Field(description="The first one's content, up to 120 characters")


class NearDuplicates(Out):
    sample: int = Field(description="The newest active memories compared")
    clusters: int
    memories_in_clusters: int
    largest: list[Cluster] = Field(description="The largest clusters, at most 10")


class Junk(Out):
    sample: int
    instructions_or_boilerplate: int = Field(description="What the write gate would hold")
    redundant_copies: int = Field(description="Memories in clusters beyond one each")
    ratio_estimate: float = Field(description="Both counts over the sample")


class HealthReport(Out):
    user_id: str | None
    generated_at: str
    memories: dict[str, int]
    quarantined: int
    open_conflicts: int
    stale_facts: int = Field(description="Active memories superseded by an active one")
    never_retrieved: dict[str, int]
    orphan_links: int = Field(description="Links to a deleted memory or across two owners")
    near_duplicates: NearDuplicates
    junk: Junk
    age_histogram: dict[str, int]


# -- Hygiene: decay, forget and the maintenance runs -------------------------------------------


class DecayIn(Strict):
    dry_run: bool = False


class BatchRunOut(Out):
    task: str
    dry_run: bool
    count: int
    batches: int
    batch_size: int
    largest_batch: int
    sample: list[dict[str, Any]]
    skipped: str | None = None
    stopped_early: bool | None = Field(
        None, description="True when time ran out between batches: call again to go on."
    )


class ForgetPreview(Out):
    id: str
    user_id: str | None
    type: MemoryType
    state: MemoryState
    importance: float
    preview: str


class ForgetOut(Out):
    model_config = ConfigDict(extra="allow")

    mode: str
    dry_run: bool
    matched: int
    truncated: bool
    limit: int
    affected: int
    memories: list[ForgetPreview] | None = Field(
        None, description="A dry run's: the memories that would be affected."
    )
    ids: list[str] | None = Field(None, description="The memories archived or purged.")


class RunsQuery(Strict):
    type: (
        Literal["decay", "retention", "conflicts", "consolidate", "vectors", "vector_images"] | None
    ) = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None


# -- Reinforce and forget --------------------------------------------------------------------


class ReinforceIn(Actor):
    step: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Importance to add; at most the brain policy's reinforce_step (default).",
    )


class ForgetFilters(MemoryFilters):
    idle_days: int | None = Field(
        None, ge=1, le=36500, description="Neither updated nor accessed for this many days."
    )
    importance_below: float | None = Field(None, gt=0, le=1)


class ForgetIn(Actor):
    ids: list[Name] | None = Field(None, min_length=1, max_length=1000)
    filters: ForgetFilters | None = None
    mode: Literal["archive", "purge"] = "archive"
    dry_run: bool = False
    confirm: bool = Field(False, description="Must be true to purge: a purge cannot be undone.")
    limit: int | None = Field(
        None, ge=1, description="Most memories affected; capped by MNEMO_FORGET_MAX."
    )

    @model_validator(mode="after")
    def _something_chosen(self) -> ForgetIn:
        if not self.ids and self.filters is None:
            raise ValueError("give ids, filters, or both (both: the ids that match the filters)")
        return self


# -- Typed records ------------------------------------------------------------------------------
# What core/curation returns: the JSON a route sends, field for field (`ConflictOut`, ...).


class ConflictRecord(TypedDict):
    id: str
    pair_key: str
    a_id: str
    b_id: str
    user_id: str | None
    kind: ConflictKind
    reason: str
    detail: dict[str, Any]
    status: ConflictStatus
    canonical_id: str | None
    mode: str | None
    note: str | None
    created_at: str
    updated_at: str
    resolved_at: str | None
    a: MemoryRecord | None
    b: MemoryRecord | None


class ConflictPageRecord(TypedDict):
    results: list[ConflictRecord]
    next_cursor: str | None


class DetectRecord(TypedDict):
    results: list[ConflictRecord]
    scanned: int


class AliasRecord(TypedDict):
    id: str
    canonical_memory_id: str
    alias_memory_id: str
    note: str | None
    confidence: float
    created_at: str
    updated_at: str
    memory: MemoryRecord | None


class AliasesRecord(TypedDict):
    canonical_id: str
    results: list[AliasRecord]


class AliasDeletedRecord(TypedDict):
    id: str
    deleted: bool


class MergeRecord(TypedDict):
    memory: MemoryRecord
    merged_ids: list[str]
    links_moved: int
    links_dropped: int


class DuplicateGroupRecord(TypedDict):
    ids: list[str]
    keep_id: str
    reason: Literal["same_content", "similar"]
    similarity: float | None
    memories: list[MemoryRecord]
    merged: NotRequired[MemoryRecord]


class ConsolidateRecord(TypedDict):
    results: list[DuplicateGroupRecord]
    applied: bool
    next_cursor: str | None


class ClusterRecord(TypedDict):
    ids: list[str]
    user_id: str | None
    preview: str


class NearDuplicatesRecord(TypedDict):
    sample: int
    clusters: int
    memories_in_clusters: int
    largest: list[ClusterRecord]


class JunkRecord(TypedDict):
    sample: int
    instructions_or_boilerplate: int
    redundant_copies: int
    ratio_estimate: float


class HealthReportRecord(TypedDict):
    user_id: str | None
    generated_at: str
    memories: dict[str, int]
    quarantined: int
    open_conflicts: int
    stale_facts: int
    never_retrieved: dict[str, int]
    orphan_links: int
    near_duplicates: NearDuplicatesRecord
    junk: JunkRecord
    age_histogram: dict[str, int]


# A decay step's sample: "from" is a keyword, so the functional form.
DecaySample = TypedDict("DecaySample", {"id": str, "from": float, "to": float})


class RetentionSample(TypedDict):
    id: str
    preview: str


class BatchRunRecord(TypedDict):
    task: str
    dry_run: bool
    count: int
    batches: int
    batch_size: int
    largest_batch: int
    sample: list[DecaySample | RetentionSample]
    skipped: NotRequired[str]
    stopped_early: NotRequired[bool]


class ForgetPreviewRecord(TypedDict):
    id: str
    user_id: str | None
    type: MemoryType
    state: MemoryState
    importance: float
    preview: str


class ForgetRecord(TypedDict):
    mode: Literal["archive", "purge"]
    dry_run: bool
    matched: int
    truncated: bool
    limit: int
    affected: int
    memories: NotRequired[list[ForgetPreviewRecord]]
    ids: NotRequired[list[str]]


class SuggestedGroupsRecord(TypedDict):
    """Maintenance's consolidation suggestion: near-duplicate groups and their memories."""

    groups: int
    memories: int


# Each contradiction rule's evidence (the key, the values that differ, ...), stored as the
# conflict's JSON detail: every rule names its own keys.
ConflictDetail = dict[str, Any]


# -- Erasure records --------------------------------------------------------------------------


class CompactionRecord(TypedDict, total=False):
    """What takes an erasure's rows out of the store's files (the receipt's `compaction`)."""

    status: Literal["pending", "done"]
    method: str
    complete: bool
    vacuumed: list[str]
    left_to_autovacuum: dict[str, str]
    requested_at: str
    at: str


class ErasureReceiptRecord(TypedDict):
    id: str
    subject: str
    status: Literal["running", "complete"]
    counts: dict[str, int]
    total: int
    compaction: CompactionRecord | None
    digest: str
    batches: int
    requested_by: str | None
    started_at: str
    completed_at: str | None


class ErasurePageRecord(TypedDict):
    results: list[ErasureReceiptRecord]
