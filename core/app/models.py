"""Typed records of the use cases that span packages (conversation ingestion and its jobs,
maintenance), and the reply model of the maintenance runs' log.

A record is what a function returns: the JSON a route sends, field for field. The reply models
of ingestion and jobs live with the memories they describe (`Outcome` and `Job` in
core/memory/models.py); tests/unit/test_records.py pairs each record with its model."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from pydantic import Field

from core.curation.summaries.models import RefreshRecord
from core.memory.models import MemoryRecord, Out
from core.webhooks.models import SweepRecord

Event = Literal["ADD", "UPDATE", "DELETE", "NONE"]
JobStatus = Literal["pending", "running", "succeeded", "failed"]


class OutcomeRecord(TypedDict):
    """What a conversation did to one memory (`Outcome`)."""

    event: Event
    memory: MemoryRecord
    previous_content: str | None


class JobErrorRecord(TypedDict):
    """Why a job failed: Mnemo's error object."""

    code: str
    message: str
    details: NotRequired[Any]


class JobRecord(TypedDict):
    """A conversation ingestion job (`Job`)."""

    id: str
    user_id: str | None
    status: JobStatus
    results: list[OutcomeRecord] | None
    error: JobErrorRecord | None
    created_at: str
    updated_at: str


# -- Maintenance ------------------------------------------------------------------------------

# What a maintenance task reported: each task has its own tally (a BatchRun's, conflict
# detection's, ...), and a recorded run keeps it as it was then, so a mapping.
TaskDetail = dict[str, Any]


class RunOut(Out):
    id: str
    type: str = Field(description="The task: decay, retention, conflicts, consolidate, ...")
    count: int = Field(description="How many memories, links or groups the task touched")
    detail: dict[str, Any] | None = Field(description="The task's own report")
    ts: str


class RunPage(Out):
    results: list[RunOut]
    next_cursor: str | None


class RunRecord(TypedDict):
    id: str
    type: str
    count: int
    detail: TaskDetail | None
    ts: str


class RunPageRecord(TypedDict):
    results: list[RunRecord]
    next_cursor: str | None


# One brain's maintenance: `brain_id`, then an entry per task that ran (named by the task,
# from those asked for), or `skipped` or `error` and nothing else; so a mapping.
BrainRun = dict[str, Any]


class HygieneRecord(TypedDict):
    """A run over every brain, within its time budget: tallies, per task."""

    brains: int
    skipped: int
    out_of_time: bool
    totals: dict[str, int]
    dry_run: bool


class OneBrainRecord(TypedDict):
    """A run over one brain (`mnemo maintain --brain`): its report."""

    brains: list[BrainRun]


class WalCheckpointRecord(TypedDict):
    busy: int
    frames: int
    done: int


class IndexMergeRecord(TypedDict):
    """Maintenance's `fulltext_merge` (SQLite): merge steps run, and whether the full-text
    index is down to one segment (False: the budget ran out, the next run goes on)."""

    steps: int
    done: bool


class CompactionRunRecord(TypedDict):
    """Maintenance's `erasure_compaction`: how many owed receipts one compaction settled, and
    whether it was complete (1) or left rows to autovacuum (0)."""

    receipts: int
    complete: NotRequired[int]


class MaintenanceRecord(TypedDict, total=False):
    """A maintenance run's report, as its `stats` row keeps it. A scheduled run has every
    key (fulltext_merge and wal_checkpoint on SQLite only); a run for one brain or a dry run
    only `hygiene`."""

    user_summaries: RefreshRecord
    expired_sessions_purged: int
    old_jobs_purged: int
    webhooks: SweepRecord
    erasure_compaction: CompactionRunRecord
    hygiene: HygieneRecord | OneBrainRecord
    fulltext_merge: IndexMergeRecord
    wal_checkpoint: WalCheckpointRecord
    duration_ms: float
