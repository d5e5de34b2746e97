"""Request and response models of erasure and the health report, shared by REST and MCP."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from core.memory.models import Name, Out, Strict


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
        description="What took the erased rows' bytes out of the store's files, once the "
        "erasure completed: SQLite merges the full-text index and checkpoints the WAL; "
        "PostgreSQL VACUUMs the tables it touched (`vacuumed`; any `left_to_autovacuum` "
        "failed, with the error's kind). `complete` is false when any step failed.",
    )


class ErasurePage(Out):
    results: list[ErasureReceipt]


class HealthQuery(Strict):
    user_id: Name | None = None


class HealthReport(Out):
    user_id: str | None
    generated_at: str
    memories: dict[str, int]
    quarantined: int
    open_conflicts: int
    stale_facts: int = Field(description="Active memories superseded by an active one")
    never_retrieved: dict[str, int]
    orphan_links: int = Field(description="Links to a deleted memory or across two owners")
    near_duplicates: dict[str, Any]
    junk: dict[str, Any]
    age_histogram: dict[str, int]
