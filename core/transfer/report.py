"""What an import did: records read, imported, updated and skipped (with reasons), per kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from core.transfer import format as fmt
from core.transfer.models import ImportRecord, KindCountsRecord, SkipSampleRecord

Strategy = Literal["merge", "skip_existing", "replace"]
STRATEGIES: tuple[Strategy, ...] = ("merge", "skip_existing", "replace")

_SAMPLES = 50


@dataclass
class KindReport:
    read: int = 0
    imported: int = 0
    updated: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def to_dict(self) -> KindCountsRecord:
        return {
            "read": self.read,
            "imported": self.imported,
            "updated": self.updated,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(sorted(self.skipped.items())),
        }


@dataclass
class ImportReport:
    brain_id: str
    strategy: Strategy
    remap_ids: bool
    kinds: dict[str, KindReport] = field(
        default_factory=lambda: {kind: KindReport() for kind in fmt.RECORD_KINDS}
    )
    remapped: int = 0
    batches: int = 0
    header: dict[str, Any] | None = None
    samples: list[SkipSampleRecord] = field(default_factory=list)
    complete: bool = False

    @property
    def read(self) -> int:
        return sum(k.read for k in self.kinds.values())

    @property
    def imported(self) -> int:
        return sum(k.imported for k in self.kinds.values())

    @property
    def updated(self) -> int:
        return sum(k.updated for k in self.kinds.values())

    @property
    def skipped(self) -> int:
        return sum(sum(k.skipped.values()) for k in self.kinds.values())

    def skip(self, kind: str, reason: str, record_id: Any, message: str | None = None) -> None:
        self.kinds[kind].skip(reason)
        if len(self.samples) < _SAMPLES:
            sample: SkipSampleRecord = {"kind": kind, "id": record_id, "reason": reason}
            if message:
                sample["message"] = message
            self.samples.append(sample)

    def to_dict(self) -> ImportRecord:
        return {
            "brain_id": self.brain_id,
            "strategy": self.strategy,
            "remap_ids": self.remap_ids,
            "read": self.read,
            "imported": self.imported,
            "updated": self.updated,
            "skipped": self.skipped,
            "remapped": self.remapped,
            "batches": self.batches,
            "complete": self.complete,
            "by_kind": {
                kind: report.to_dict() for kind, report in self.kinds.items() if report.read
            },
            "skipped_samples": self.samples,
        }
