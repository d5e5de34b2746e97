"""What every importer produces: Mnemo-shaped records read from another memory system.

An importer turns its source (a SQLite file, a JSON export, a SQL dump) into an iterator of
these records; `core.transfer.importers.pipeline` maps them onto Mnemo's export format and feeds
them to the import entry point. Records carry Mnemo ids already: `IdMap` derives them from the
source's ids, the target brain and the system, so importing the same file twice gives the same ids
(a re-run with skip_existing then finds everything in place) and two brains importing one file
never collide on the global primary keys.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from core.kernel.errors import InvalidInput

System = Literal["mem0", "openmemory", "memoryvault"]
MemoryType = Literal["note", "fact", "journal"]
State = Literal["active", "archived", "deleted"]
HistoryEvent = Literal["ADD", "UPDATE", "DELETE", "ARCHIVE", "RESTORE"]
RELATIONS = ("related", "supports", "contradicts", "supersedes", "causes", "example_of")

# A JSON object as another system held it (a memory's metadata, a row's payload, its
# `imported_from`: system, id, then whatever that source says of the record): each system, and
# each version of it, has its own keys, and Mnemo keeps them as they were.
JsonObject = dict[str, Any]

# Fixed namespace of imported ids (uuid5 over brain, system, kind and source id).
_NAMESPACE = uuid.UUID("5f0e4d8a-3b1c-4e5f-9a7b-6c2d1e0f3a4b")


class SourceError(InvalidInput):
    """The source cannot be read: says which file, and which line when there is one."""

    code = "import_source_invalid"

    def __init__(self, path: Path | str, problem: str, *, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}", details={"file": str(path), "line": line})


@dataclass(frozen=True)
class Origin:
    """metadata.imported_from: where a record came from."""

    system: System
    id: str
    extra: JsonObject = field(default_factory=dict)

    def as_dict(self) -> JsonObject:
        return {"system": self.system, "id": self.id, **self.extra}


@dataclass
class MemoryRecord:
    id: str
    content: str
    origin: Origin
    created_at: int
    updated_at: int
    type: MemoryType = "note"
    title: str | None = None
    key: str | None = None
    tags: list[str] = field(default_factory=list)
    source: str | None = None
    confidence: float = 0.7
    importance: float = 0.5
    metadata: JsonObject = field(default_factory=dict)
    state: State = "active"
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    archived_at: int | None = None
    deleted_at: int | None = None
    last_accessed_at: int | None = None
    superseded_by: str | None = None

    def full_metadata(self) -> JsonObject:
        return {**self.metadata, "imported_from": self.origin.as_dict()}


@dataclass
class HistoryRecord:
    id: str
    memory_id: str
    event: HistoryEvent
    created_at: int
    origin: Origin
    old_memory: str | None = None
    new_memory: str | None = None
    user_id: str | None = None
    actor_id: str | None = None
    role: str | None = None
    is_deleted: bool = False
    updated_at: int | None = None

    def detail(self) -> JsonObject:
        return {"imported_from": self.origin.as_dict()}


@dataclass
class LinkRecord:
    id: str
    from_id: str
    to_id: str
    created_at: int
    origin: Origin
    relation: str = "related"
    label: str | None = None
    weight: float = 1.0
    made_by: Literal["manual", "inferred", "system"] = "manual"  # memory_links.origin


@dataclass
class UserRecord:
    user_id: str
    created_at: int
    updated_at: int
    summary: str | None = None
    reflection_count: int = 0


@dataclass
class TrustRecord:
    source: str
    trust: float
    created_at: int
    updated_at: int
    notes: str | None = None


@dataclass
class PolicyRecord:
    policy: dict[str, Any]
    created_at: int
    updated_at: int


@dataclass
class Skip:
    """Something read from the source and deliberately left out, with why."""

    kind: str
    source_id: str
    reason: str


Record = MemoryRecord | HistoryRecord | LinkRecord | UserRecord | TrustRecord | PolicyRecord | Skip


class Source(Protocol):
    """An opened source: what it is, how many items it holds, and its records."""

    system: System
    description: str
    total: int  # the items `records` reads (memories, history rows, links...), for progress

    def records(self, ids: IdMap) -> Iterator[Record]: ...


@dataclass(frozen=True)
class Options:
    user_id: str | None = None  # for memories the source gives no user
    source_brain: str | None = None  # MemoryVault D1 dumps hold every brain: which one


class IdMap:
    """Source ids -> Mnemo ids, deterministic per (brain, system, kind)."""

    def __init__(self, brain_id: str, system: System) -> None:
        self._prefix = f"{brain_id}\x1f{system}\x1f"

    def __call__(self, kind: str, source_id: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"{self._prefix}{kind}\x1f{source_id}"))


def epoch_ms(value: Any, *, seconds: bool = False) -> int | None:
    """Epoch milliseconds from ISO 8601 text (naive means UTC) or a number: `seconds` says
    whether numbers are seconds (MemoryVault) or milliseconds (OpenMemory). None stays None;
    anything else raises ValueError for the caller to report with its location."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"not a time: {value!r}")
        return int(value * 1000) if seconds else int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return epoch_ms(number, seconds=seconds)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    raise ValueError(f"not a time: {value!r}")


def clamp01(value: Any, default: float) -> float:
    if value is None or isinstance(value, bool):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    if not math.isfinite(number):
        return default
    return min(1.0, max(0.0, number))


def json_object(value: Any) -> JsonObject:
    """A JSON object stored as text (or already decoded); anything else becomes {"value": ...}
    so nothing the source held is dropped."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {"value": value}
    if isinstance(value, dict):
        return value
    return {"value": value}


def clean_tags(tags: list[Any]) -> list[str]:
    """Mnemo's tag rules (whitespace folded, lower case, no empties, no repeats)."""
    seen: dict[str, None] = {}
    for tag in tags:
        cleaned = " ".join(str(tag).split()).lower()
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)


def settle_facts(memories: list[MemoryRecord]) -> list[MemoryRecord]:
    """One current fact per (user, key), as Mnemo requires and the sources do not: among
    active facts sharing a key the newest stays current and the older ones are archived as
    superseded by it, which is what saving them in order into Mnemo would have done. (Exact
    duplicates are left to the import, which skips them and gives their history and links
    to the memory holding the content.)"""
    current: dict[tuple[str, str], MemoryRecord] = {}
    for memory in sorted(memories, key=lambda m: (m.created_at, m.id), reverse=True):
        if memory.state != "active" or memory.type != "fact" or not memory.key:
            continue
        slot = (memory.user_id or "", memory.key)
        newer = current.setdefault(slot, memory)
        if newer is not memory:
            memory.state = "archived"
            memory.archived_at = newer.created_at
            memory.superseded_by = newer.id
    return memories
