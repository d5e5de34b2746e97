"""OpenMemory: its SQLite database (data/openmemory.sqlite), at v1.1 or v1.2.

v1.1 has memories, vectors and waypoints and no users; v1.2 adds user_id to all three and a
users table (summary, reflection_count). The version is told by the columns, so a database
migrated by hand reads the same as one migrated by OpenMemory's tool.

The mapping:
  * content, created_at, updated_at (epoch ms, as OpenMemory stores them) are kept; user_id too
    (v1.1 has none: `--user-id` gives one, else the memories belong to no user, as OpenMemory
    treated them);
  * sectors: the primary sector becomes a tag naming it (the same mapping as Mnemo's
    OpenMemory-compatible API, see core/memory/openmemory.py), and an `episodic` memory is a journal
    entry, any other a note; the sectors it has vectors in go to metadata.openmemory.sectors;
  * salience becomes importance (clamped to 0..1). OpenMemory's decay rewrites salience in
    place, so the stored value is already the decayed one; decay_lambda, the stored salience,
    version, feedback_score, segment and simhash are kept in metadata.openmemory, and
    last_seen_at becomes last_accessed_at;
  * `tags` (a JSON list) are tags, `meta` (a JSON object) is the metadata;
  * waypoints become `related` links with their weight (label "waypoint"); a waypoint whose
    end is not an imported memory, or that links a memory to itself, is skipped with why;
  * users keep their summary, reflection_count and timestamps.
Vectors themselves are not carried over: they belong to OpenMemory's embedding model; run
`mnemo reindex` after the import.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.transfer.importers.records import (
    IdMap,
    LinkRecord,
    MemoryRecord,
    Options,
    Origin,
    Record,
    Skip,
    SourceError,
    System,
    UserRecord,
    clamp01,
    clean_tags,
    epoch_ms,
    json_object,
    settle_facts,
)
from core.transfer.importers.sqlite_source import columns, count, open_database, tables

_EXTRA_FIELDS = ("salience", "decay_lambda", "version", "feedback_score", "segment", "simhash")


class OpenMemorySource:
    system: System = "openmemory"
    ids: IdMap

    def __init__(self, paths: list[Path], options: Options) -> None:
        if len(paths) != 1:
            raise SourceError(
                paths[-1] if paths else "-", "give exactly one OpenMemory SQLite file"
            )
        self.path = paths[0]
        self.options = options
        self.conn = open_database(self.path)
        present = tables(self.conn)
        if "memories" not in present:
            raise SourceError(self.path, "no memories table: not an OpenMemory database")
        self.memory_columns = set(columns(self.conn, "memories"))
        missing = {"id", "content", "created_at"} - self.memory_columns
        if missing:
            raise SourceError(
                self.path, f"table memories lacks the column(s) {', '.join(sorted(missing))}"
            )
        self.has_users = "user_id" in self.memory_columns and "users" in present
        self.version = "1.2" if "user_id" in self.memory_columns else "1.1"
        self.has_vectors = "vectors" in present and {"id", "sector"} <= set(
            columns(self.conn, "vectors")
        )
        self.has_waypoints = "waypoints" in present
        counts = {"memories": count(self.conn, "memories")}
        if self.has_waypoints:
            counts["waypoints"] = count(self.conn, "waypoints")
        if self.has_users:
            counts["users"] = count(self.conn, "users")
        self.total = sum(counts.values())
        listed = ", ".join(f"{n} {name}" for name, n in counts.items())
        self.description = f"OpenMemory v{self.version} database ({listed})"

    def records(self, ids: IdMap) -> Iterator[Record]:
        self.ids = ids
        try:
            yield from self._records()
        except sqlite3.Error as exc:
            raise SourceError(self.path, f"reading the database: {exc}") from None

    def _records(self) -> Iterator[Record]:
        sectors = self._sectors()
        memories: list[MemoryRecord] = []
        for row in self.conn.execute("SELECT * FROM memories ORDER BY created_at, id"):
            made = self._memory(dict(row), sectors)
            if isinstance(made, Skip):
                yield made
            else:
                memories.append(made)
        yield from settle_facts(memories)
        kept = {memory.origin.id for memory in memories}
        if self.has_waypoints:
            yield from self._waypoints(kept)
        if self.has_users:
            yield from self._users()

    def _sectors(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        if not self.has_vectors:
            return found
        for memory_id, sector in self.conn.execute(
            "SELECT id, sector FROM vectors ORDER BY id, sector"
        ):
            found.setdefault(str(memory_id), []).append(str(sector))
        return found

    def _memory(self, row: dict[str, Any], sectors: dict[str, list[str]]) -> MemoryRecord | Skip:
        source_id = str(row["id"])
        content = row.get("content")
        if not isinstance(content, str) or not content.strip():
            return Skip("memory", source_id, "no content")
        try:
            created = epoch_ms(row.get("created_at"))
            updated = epoch_ms(row.get("updated_at"))
            seen = epoch_ms(row.get("last_seen_at"))
        except ValueError as exc:
            return Skip("memory", source_id, f"unreadable time: {exc}")
        created = created if created is not None else updated
        if created is None:
            return Skip("memory", source_id, "no created_at")
        primary = str(row.get("primary_sector") or "").strip().lower() or None
        tags = _tag_list(row.get("tags"))
        if primary:
            tags = clean_tags([*tags, primary])
        details = {name: row[name] for name in _EXTRA_FIELDS if row.get(name) is not None}
        details["primary_sector"] = primary
        details["sectors"] = sectors.get(source_id, [primary] if primary else [])
        metadata = {**json_object(row.get("meta")), "openmemory": details}
        return MemoryRecord(
            id=self.ids("memory", source_id),
            content=content.strip(),
            origin=Origin("openmemory", source_id),
            created_at=created,
            updated_at=updated if updated is not None else created,
            type="journal" if primary == "episodic" else "note",
            tags=tags,
            importance=clamp01(row.get("salience"), 0.5),
            metadata=metadata,
            user_id=_text(row.get("user_id")) or self.options.user_id,
            last_accessed_at=seen,
        )

    def _waypoints(self, kept: set[str]) -> Iterator[Record]:
        for row in self.conn.execute("SELECT * FROM waypoints ORDER BY created_at, src_id"):
            src, dst = str(row["src_id"]), str(row["dst_id"])
            name = f"{src}->{dst}"
            if src == dst:
                yield Skip("waypoint", name, "links a memory to itself")
                continue
            missing = [end for end in (src, dst) if end not in kept]
            if missing:
                yield Skip("waypoint", name, f"memory {missing[0]} is not imported")
                continue
            try:
                created = epoch_ms(row["created_at"]) or epoch_ms(row["updated_at"]) or 0
            except ValueError as exc:
                yield Skip("waypoint", name, f"unreadable time: {exc}")
                continue
            weight = row["weight"]
            yield LinkRecord(
                id=self.ids("link", name),
                from_id=self.ids("memory", src),
                to_id=self.ids("memory", dst),
                created_at=created,
                origin=Origin("openmemory", name),
                relation="related",
                label="waypoint",
                made_by="inferred",
                weight=float(weight) if isinstance(weight, int | float) else 1.0,
            )

    def _users(self) -> Iterator[Record]:
        for row in self.conn.execute("SELECT * FROM users ORDER BY user_id"):
            user_id = _text(row["user_id"])
            if user_id is None:
                yield Skip("user", "(empty)", "no user_id")
                continue
            try:
                created = epoch_ms(row["created_at"])
                updated = epoch_ms(row["updated_at"])
            except ValueError as exc:
                yield Skip("user", user_id, f"unreadable time: {exc}")
                continue
            created = created if created is not None else (updated or 0)
            yield UserRecord(
                user_id=user_id,
                created_at=created,
                updated_at=updated if updated is not None else created,
                summary=_text(row["summary"]),
                reflection_count=int(row["reflection_count"] or 0),
            )


def _tag_list(value: Any) -> list[str]:
    """OpenMemory stores tags as a JSON list; a plain comma-separated string reads too."""
    if value is None or value == "":
        return []
    decoded = json_object(value)
    if "value" in decoded and len(decoded) == 1:
        inner = decoded["value"]
        if isinstance(inner, list):
            return clean_tags(inner)
        if isinstance(inner, str):
            return clean_tags(inner.split(","))
    return []


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None
