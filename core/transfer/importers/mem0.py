"""mem0: its SQLite `history.db` and its `get_all` JSON export.

history.db holds one row per change of a memory (event ADD, UPDATE or DELETE, old and new
text). Its table has had several shapes; the columns are found by name, so all of them read:

  * legacy (mem0 0.0.x): id, memory_id, prev_value, new_value, event, timestamp
    (is_deleted sometimes present);
  * intermediate: id, memory_id, old_memory, new_memory, new_value, event, created_at,
    updated_at, is_deleted;
  * current (10 columns): id, memory_id, old_memory, new_memory, event, created_at, updated_at,
    is_deleted, actor_id, role.

The time of a change: mem0 writes an UPDATE row with the memory's original created_at and the
update's updated_at, so the change happened at updated_at when there is one, else created_at;
a DELETE row written without either took place after the change before it, and gets that
time plus one millisecond (so the two keep their order).

History only (no JSON given): each memory's final state is rebuilt from its events, in order:
content is the last text written, created_at the earliest time the rows give (an UPDATE
row's created_at is the memory's birth), updated_at the last change. A memory
whose last event is DELETE is imported in state `deleted` (deleted_at = that event), not
skipped: its history rows then keep a memory to belong to, as Mnemo's own soft delete does,
and `GET /v1/memories?state=deleted` shows what was removed. history.db has no user ids; the
memories go to `--user-id` when one is given.

get_all JSON: `{"results": [...]}` (or the bare list older versions returned); each item's id,
memory, hash, metadata, created_at, updated_at, user_id, agent_id, run_id are kept, `categories`
become tags and other fields go to metadata.mem0. With a history.db given as well, the JSON is
the memories' current state and history.db brings their history rows (and any memory only it
knows, rebuilt as above). Graph `relations` name entities, not memories: skipped with a reason.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.transfer.importers.records import (
    HistoryRecord,
    IdMap,
    MemoryRecord,
    Options,
    Origin,
    Record,
    Skip,
    SourceError,
    System,
    clean_tags,
    epoch_ms,
    settle_facts,
)
from core.transfer.importers.sqlite_source import columns, open_database, read_json_file, tables

_ALIASES = {
    "old": ("old_memory", "prev_value"),
    "new": ("new_memory", "new_value"),
    "created_at": ("created_at", "timestamp"),
    "updated_at": ("updated_at",),
    "is_deleted": ("is_deleted",),
    "actor_id": ("actor_id",),
    "role": ("role",),
}
_KNOWN_ITEM_FIELDS = {
    "id",
    "memory",
    "hash",
    "metadata",
    "created_at",
    "updated_at",
    "user_id",
    "agent_id",
    "run_id",
    "categories",
}


@dataclass
class _Row:
    rowid: int
    id: str
    memory_id: str
    event: str
    old: str | None
    new: str | None
    created_at: int | None  # when the change happened, once _place_in_time has run
    updated_at: int | None
    is_deleted: bool
    actor_id: str | None
    role: str | None
    source_created_at: int | None = None  # as stored: an UPDATE row's is the memory's birth


class Mem0Source:
    system: System = "mem0"
    ids: IdMap

    def __init__(self, paths: list[Path], options: Options) -> None:
        self.options = options
        self.history_path: Path | None = None
        self.json_path: Path | None = None
        for given in paths:
            # mem0 keeps history.db in its directory (~/.mem0 by default): naming that will do.
            path = given / "history.db" if given.is_dir() else given
            if path.suffix.lower() == ".json":
                if self.json_path is not None:
                    raise SourceError(path, "give at most one get_all JSON export")
                self.json_path = path
            else:
                if self.history_path is not None:
                    raise SourceError(path, "give at most one history.db")
                self.history_path = path
        self._items: list[Any] = []
        self._relations: list[Any] = []
        self._history: sqlite3.Connection | None = None
        self._history_columns: dict[str, str] = {}
        parts = []
        if self.json_path is not None:
            self._items, self._relations = _read_export(self.json_path)
            parts.append(f"get_all export ({len(self._items)} memories)")
        history_rows = 0
        if self.history_path is not None:
            self._history, self._history_columns, history_rows = _open_history(self.history_path)
            shape = "current 10-column" if "actor_id" in self._history_columns else "legacy"
            parts.append(f"history.db ({shape} table, {history_rows} rows)")
        self.description = "mem0 " + " + ".join(parts)
        self.total = len(self._items) + len(self._relations) + history_rows

    def records(self, ids: IdMap) -> Iterator[Record]:
        self.ids = ids
        memories: dict[str, MemoryRecord] = {}
        skips: list[Skip] = []
        for position, item in enumerate(self._items):
            made = self._memory_from_item(position, item)
            if isinstance(made, Skip):
                skips.append(made)
            elif made.origin.id in memories:
                skips.append(Skip("memory", made.origin.id, "the id appears twice in the export"))
            else:
                memories[made.origin.id] = made
        for index, _ in enumerate(self._relations):
            skips.append(
                Skip(
                    "relation",
                    f"relations[{index}]",
                    "graph relations name entities, not memories: not imported",
                )
            )
        rows: dict[str, list[_Row]] = {}
        if self._history is not None:
            for row in self._read_history(skips):
                rows.setdefault(row.memory_id, []).append(row)
            for memory_id, events in list(rows.items()):
                if all(r.created_at is None and r.updated_at is None for r in events):
                    del rows[memory_id]
                    reason = "no time, nor any other row of its memory"
                    skips += [Skip("history", r.id, reason) for r in events]
                    continue
                _place_in_time(events)
                if memory_id not in memories:
                    rebuilt = self._rebuild(memory_id, events)
                    if rebuilt is None:
                        skips.append(
                            Skip("memory", memory_id, "its history has no text to rebuild it from")
                        )
                        continue
                    memories[memory_id] = rebuilt
        yield from skips
        yield from settle_facts(list(memories.values()))
        for memory_id, events in rows.items():
            for row in events:
                if memory_id not in memories:
                    yield Skip("history", row.id, f"its memory {memory_id} is not imported")
                    continue
                yield self._history_record(row, memories[memory_id])

    # get_all JSON

    def _memory_from_item(self, position: int, item: Any) -> MemoryRecord | Skip:
        where = f"results[{position}]"
        if not isinstance(item, dict):
            return Skip("memory", where, "not a JSON object")
        source_id = item.get("id")
        if not isinstance(source_id, str | int) or isinstance(source_id, bool) or source_id == "":
            return Skip("memory", where, "no id")
        source_id = str(source_id)
        content = item.get("memory")
        if not isinstance(content, str) or not content.strip():
            return Skip("memory", source_id, "no memory text")
        try:
            created = epoch_ms(item.get("created_at"))
            updated = epoch_ms(item.get("updated_at"))
        except ValueError as exc:
            return Skip("memory", source_id, f"unreadable time: {exc}")
        if created is None:
            return Skip("memory", source_id, "no created_at")
        metadata = item.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            metadata = {"value": metadata}
        extras = {k: v for k, v in item.items() if k not in _KNOWN_ITEM_FIELDS}
        if extras:
            metadata = {**metadata, "mem0": extras}
        categories = item.get("categories")
        tags = clean_tags(categories) if isinstance(categories, list) else []
        origin_extra = {"hash": item["hash"]} if isinstance(item.get("hash"), str) else {}
        return MemoryRecord(
            id=self.ids("memory", source_id),
            content=content.strip(),
            origin=Origin("mem0", source_id, origin_extra),
            created_at=created,
            updated_at=updated if updated is not None else created,
            tags=tags,
            metadata=metadata,
            user_id=_text(item.get("user_id")) or self.options.user_id,
            agent_id=_text(item.get("agent_id")),
            run_id=_text(item.get("run_id")),
        )

    # history.db

    def _read_history(self, skips: list[Skip]) -> Iterator[_Row]:
        assert self._history is not None and self.history_path is not None
        names = self._history_columns
        wanted = ("old", "new", "created_at", "updated_at", "is_deleted", "actor_id", "role")
        select = ", ".join(f'"{names[f]}"' if f in names else "NULL" for f in wanted)
        query = f"SELECT rowid, id, memory_id, event, {select} FROM history ORDER BY rowid"
        try:
            cursor = self._history.execute(query)
            for raw in cursor:
                rowid, row_id, memory_id, event, old, new, created, updated = tuple(raw)[:8]
                deleted, actor, role = tuple(raw)[8:]
                row_id = str(row_id) if row_id is not None else f"rowid {rowid}"
                if memory_id is None or str(memory_id) == "":
                    skips.append(Skip("history", row_id, "no memory_id"))
                    continue
                kind = str(event or "").strip().upper()
                if kind not in ("ADD", "UPDATE", "DELETE"):
                    skips.append(Skip("history", row_id, f"unknown event {event!r}"))
                    continue
                try:
                    created_ms, updated_ms = epoch_ms(created), epoch_ms(updated)
                except ValueError as exc:
                    skips.append(Skip("history", row_id, f"unreadable time: {exc}"))
                    continue
                yield _Row(
                    rowid=int(rowid),
                    id=row_id,
                    memory_id=str(memory_id),
                    event=kind,
                    old=_text(old),
                    new=_text(new),
                    created_at=created_ms,
                    updated_at=updated_ms,
                    source_created_at=created_ms,
                    is_deleted=bool(deleted) or kind == "DELETE",
                    actor_id=_text(actor),
                    role=_text(role),
                )
        except sqlite3.Error as exc:
            raise SourceError(self.history_path, f"reading table history: {exc}") from None

    def _rebuild(self, memory_id: str, events: list[_Row]) -> MemoryRecord | None:
        content: str | None = None
        state = "active"
        deleted_at: int | None = None
        for row in events:
            if row.event == "DELETE":
                content = content or row.old
                state, deleted_at = "deleted", row.created_at
            else:
                content = row.new or content
                state, deleted_at = "active", None
        if not content or not content.strip():
            return None
        last = events[-1]
        births = [r.source_created_at for r in events if r.source_created_at is not None]
        created = min([*births, *(r.created_at for r in events if r.created_at is not None)])
        assert last.created_at is not None
        return MemoryRecord(
            id=self.ids("memory", memory_id),
            content=content.strip(),
            origin=Origin("mem0", memory_id, {"rebuilt_from": "history"}),
            created_at=created,
            updated_at=last.created_at,
            state="deleted" if state == "deleted" else "active",
            deleted_at=deleted_at,
            user_id=self.options.user_id,
        )

    def _history_record(self, row: _Row, memory: MemoryRecord) -> HistoryRecord:
        assert row.created_at is not None
        return HistoryRecord(
            id=self.ids("history", row.id),
            memory_id=memory.id,
            event="ADD" if row.event == "ADD" else "UPDATE" if row.event == "UPDATE" else "DELETE",
            created_at=row.created_at,
            updated_at=row.updated_at,
            origin=Origin("mem0", row.id),
            old_memory=row.old,
            new_memory=row.new,
            user_id=memory.user_id,
            actor_id=row.actor_id,
            role=row.role,
            is_deleted=row.is_deleted,
        )


def _place_in_time(events: list[_Row]) -> None:
    """Give every row the time its change happened (see the module doc), then order them."""
    previous: int | None = None
    for row in sorted(events, key=lambda r: r.rowid):
        happened = row.updated_at if row.event != "ADD" and row.updated_at else row.created_at
        if happened is None and previous is not None:
            happened = previous + 1  # just after, so the rows keep their order
        row.created_at = happened
        previous = happened if happened is not None else previous
    known = [r.created_at for r in events if r.created_at is not None]
    fallback = min(known) if known else 0
    for row in events:
        if row.created_at is None:
            row.created_at = fallback
    events.sort(key=lambda r: (r.created_at or 0, r.rowid))


def _read_export(path: Path) -> tuple[list[Any], list[Any]]:
    document = read_json_file(path)
    if isinstance(document, list):
        return document, []
    if isinstance(document, dict) and isinstance(document.get("results"), list):
        relations = document.get("relations")
        return document["results"], relations if isinstance(relations, list) else []
    raise SourceError(
        path,
        'not a mem0 get_all export: expected {"results": [...]} or a list of memories',
        line=1,
    )


def _open_history(path: Path) -> tuple[sqlite3.Connection, dict[str, str], int]:
    conn = open_database(path)
    if "history" not in tables(conn):
        conn.close()
        raise SourceError(path, "no history table: not a mem0 history.db")
    present = set(columns(conn, "history"))
    missing = [name for name in ("id", "memory_id", "event") if name not in present]
    if missing:
        conn.close()
        raise SourceError(path, f"table history lacks the column(s) {', '.join(missing)}")
    found: dict[str, str] = {}
    for field, names in _ALIASES.items():
        for name in names:
            if name in present:
                found[field] = name
                break
    if "created_at" not in found and "updated_at" not in found:
        conn.close()
        raise SourceError(path, "table history has no created_at or timestamp column")
    total = int(conn.execute("SELECT count(*) FROM history").fetchone()[0])
    return conn, found, total


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None
