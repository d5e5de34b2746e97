"""From another system's files to a brain: an importer's records, turned into Mnemo's export
format (core/transfer/format.py) and written by the import entry point
(core/transfer/importing.py), with a report of what was read, imported and skipped, and why.

The source is read in full before anything is written, so a malformed file stops the import
with the file (and line) named and nothing changed. Ids are derived from the source ids and the
brain (core/transfer/importers/records.py `IdMap`) and kept as given (`remap_ids=False`): importing
the same file again with `skip_existing` (or `merge`, which leaves unchanged rows alone) finds every
record in place and imports nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from core.embeddings.base import Embedder
from core.identity.brains import check_slug, ensure_brain
from core.kernel.config import Limits
from core.kernel.db.engine import transaction
from core.kernel.errors import InvalidInput
from core.kernel.scope import Scope
from core.memory import trust
from core.transfer import format as fmt
from core.transfer.importers.mem0 import Mem0Source
from core.transfer.importers.memoryvault import MemoryVaultSource
from core.transfer.importers.openmemory import OpenMemorySource
from core.transfer.importers.records import (
    HistoryRecord,
    IdMap,
    LinkRecord,
    MemoryRecord,
    Options,
    PolicyRecord,
    Record,
    Skip,
    Source,
    TrustRecord,
    UserRecord,
)
from core.transfer.importing import DEFAULT_BATCH, ImportReport, Strategy, import_records
from core.transfer.models import ImportSkipRecord, KindTallyRecord, MigrationRecord

SYSTEMS: dict[str, Callable[[list[Path], Options], Source]] = {
    "mem0": Mem0Source,
    "openmemory": OpenMemorySource,
    "memoryvault": MemoryVaultSource,
}
Progress = Callable[[int, int], None]  # (records done, records in all)
_ALREADY_THERE = ("exists", "unchanged")


def open_source(system: str, paths: Sequence[Path | str], options: Options) -> Source:
    opener = SYSTEMS.get(system)
    if opener is None:
        raise InvalidInput(
            f"unknown source system {system!r}: expected one of {', '.join(SYSTEMS)}",
            details={"field": "from"},
        )
    if not paths:
        raise InvalidInput("give the file to import", details={"field": "path"})
    return opener([Path(p) for p in paths], options)


def export_line(record: Record) -> fmt.Line | None:
    """One importer record as an export-format line (None for a Skip)."""
    if isinstance(record, MemoryRecord):
        return fmt.record(
            "memory",
            {
                "id": record.id,
                "user_id": record.user_id,
                "agent_id": record.agent_id,
                "run_id": record.run_id,
                "type": record.type,
                "title": record.title,
                "key": record.key,
                "content": record.content,
                "tags": record.tags,
                "source": record.source,
                "confidence": record.confidence,
                "importance": record.importance,
                "metadata": record.full_metadata(),
                "state": record.state,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
                "archived_at": record.archived_at,
                "deleted_at": record.deleted_at,
                "last_accessed_at": record.last_accessed_at,
                "superseded_by": record.superseded_by,
            },
        )
    if isinstance(record, HistoryRecord):
        return fmt.record(
            "history",
            {
                "id": record.id,
                "memory_id": record.memory_id,
                "user_id": record.user_id,
                "event": record.event,
                "old_memory": record.old_memory,
                "new_memory": record.new_memory,
                "detail": record.detail(),
                "actor_id": record.actor_id,
                "role": record.role,
                "is_deleted": record.is_deleted,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
            },
        )
    if isinstance(record, LinkRecord):
        return fmt.record(
            "link",
            {
                "id": record.id,
                "from_id": record.from_id,
                "to_id": record.to_id,
                "relation": record.relation,
                "label": record.label,
                "weight": record.weight,
                "origin": record.made_by,
                "created_at": record.created_at,
            },
        )
    if isinstance(record, UserRecord):
        return fmt.record(
            "user",
            {
                "user_id": record.user_id,
                "summary": record.summary,
                "reflection_count": record.reflection_count,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
                # The summary was made from the memories as they were then: memories newer
                # than it count towards its next refresh, as for a summary Mnemo made.
                "summarized_at": record.updated_at if record.summary else None,
            },
        )
    if isinstance(record, TrustRecord):
        return fmt.record(
            "trust",
            {
                "source_key": trust.normalise(record.source),
                "trust": record.trust,
                "notes": record.notes,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
            },
        )
    if isinstance(record, PolicyRecord):
        return fmt.record(
            "policy",
            {
                "policy_json": record.policy,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
            },
        )
    return None


@dataclass
class MigrationReport:
    system: str
    description: str
    brain: str
    strategy: str
    read: int  # items in the source (memories, history rows, links, users...)
    records: int  # records handed to the import
    source_skips: list[Skip] = field(default_factory=list)
    imported: ImportReport | None = None
    # Mnemo id -> the id the record had in the source, to name skipped records as the user knows
    # them.
    source_ids: dict[str, str] = field(default_factory=dict)

    def import_skips(self) -> list[ImportSkipRecord]:
        """The import's skipped records (a sample), with their source ids."""
        if self.imported is None:
            return []
        return [
            {**sample, "source_id": self.source_ids.get(str(sample.get("id")), sample.get("id"))}
            for sample in self.imported.samples
        ]

    def skipped_by_reason(self) -> dict[str, int]:
        """'kind: reason' -> count, for the importer's skips and the import's together."""
        counts: dict[str, int] = {}
        for skip in self.source_skips:
            name = f"{skip.kind}: {skip.reason}"
            counts[name] = counts.get(name, 0) + 1
        if self.imported is not None:
            for kind, report in self.imported.kinds.items():
                for reason, n in report.skipped.items():
                    name = f"{kind}: {reason}"
                    counts[name] = counts.get(name, 0) + n
        return dict(sorted(counts.items()))

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_reason().values())

    def to_dict(self) -> MigrationRecord:
        by_kind: dict[str, KindTallyRecord] = {}
        if self.imported is not None:
            for kind, report in self.imported.kinds.items():
                if report.read:
                    by_kind[kind] = {"imported": report.imported, "updated": report.updated}
        return {
            "from": self.system,
            "source": self.description,
            "brain": self.brain,
            "strategy": self.strategy,
            "read": self.read,
            "records": self.records,
            "imported": self.imported.imported if self.imported else 0,
            "updated": self.imported.updated if self.imported else 0,
            "by_kind": by_kind,
            "skipped": self.skipped,
            "skipped_by_reason": self.skipped_by_reason(),
            "source_skips": [
                {"kind": s.kind, "id": s.source_id, "reason": s.reason} for s in self.source_skips
            ],
            "import_skips": self.import_skips(),
        }

    def lines(self, *, detail_limit: int = 20) -> list[str]:
        """The report for people, one line each."""
        out = [
            f"{self.description} -> brain {self.brain!r} ({self.strategy})",
            f"read: {self.read} source rows",
        ]
        if self.imported is not None:
            parts = [
                f"{report.imported} {kind}"
                + (f" (+{report.updated} updated)" if report.updated else "")
                for kind, report in self.imported.kinds.items()
                if report.read
            ]
            out.append(f"imported: {self.imported.imported} ({', '.join(parts) or 'nothing'})")
        out.append(f"skipped: {self.skipped}")
        for reason, n in self.skipped_by_reason().items():
            out.append(f"  {n:>6}  {reason}")
        details = [f"    {s.kind} {s.source_id}: {s.reason}" for s in self.source_skips]
        details += [
            f"    {s['kind']} {s['source_id']}: {s['reason']}"
            + (f" ({s['message']})" if s.get("message") else "")
            for s in self.import_skips()
            # Already in the brain (a re-run): the counts say it; a line each is noise.
            if s["reason"] not in _ALREADY_THERE
        ]
        if details:
            out.append("skipped records:")
            out += details[:detail_limit]
            if len(details) > detail_limit:
                out.append(f"    ... and {len(details) - detail_limit} more")
        return out


def run_import(
    engine: Engine,
    system: str,
    paths: Sequence[Path | str],
    brain: str,
    *,
    strategy: Strategy | str = "merge",
    user_id: str | None = None,
    source_brain: str | None = None,
    embedder: Embedder | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    limits: Limits | None = None,
    gate: bool = False,
) -> MigrationReport:
    """Import `paths` (read as `system`'s files) into the brain with slug `brain`, created if
    new once the source has been opened and checked. `gate`: each memory passes the brain's
    write gate (see `import_records`)."""
    check_slug(brain)
    source = open_source(system, paths, Options(user_id=user_id, source_brain=source_brain))
    # Opening the source has read and checked it: only now is a new brain made.
    with transaction(engine) as conn:
        target = ensure_brain(conn, brain)
    records = list(source.records(IdMap(target, source.system)))
    lines = [line for line in map(export_line, records) if line is not None]
    report = MigrationReport(
        system=source.system,
        description=source.description,
        brain=brain,
        strategy=str(strategy),
        read=source.total,
        records=len(lines),
        source_skips=[r for r in records if isinstance(r, Skip)],
        source_ids={
            r.id: r.origin.id
            for r in records
            if isinstance(r, MemoryRecord | HistoryRecord | LinkRecord)
        },
    )
    if progress is not None:
        progress(0, len(lines))
    scope = Scope(brain_id=target, principal=f"import:{source.system}", role="owner")
    report.imported = import_records(
        engine,
        scope,
        lines,
        strategy=strategy,
        remap_ids=False,
        embedder=embedder,
        batch_size=batch_size,
        on_batch=None if progress is None else lambda r: progress(r.read, len(lines)),
        limits=limits,
        gate=gate,
    )
    return report
