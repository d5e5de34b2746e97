"""MemoryVault: its `memoryvault_export_v1` JSON (GET /api/export) and a D1 SQL dump.

Both hold the same rows (the export is one brain's rows of the D1 tables), so both are read
into the export's shape and mapped once:

  * memories keep type (note, fact, journal), title, key, content, source, confidence,
    importance and their times (MemoryVault stores epoch seconds); `tags` (comma-separated)
    become a list; `archived_at` set means state archived. MemoryVault has no end users: the
    memories go to `--user-id` when one is given. Two current facts with one key (MemoryVault
    does not prevent it) leave the newest current and the older archived as superseded;
  * memory_links keep their relation type (the same six as Mnemo's), label and time;
  * memory_changelog: entries about a memory become its history rows where the event maps
    (saved/created -> ADD, updated -> UPDATE, archived -> ARCHIVE, restored -> RESTORE,
    deleted -> DELETE; the entry's summary and payload kept in the row's detail). A memory
    whose changelog starts with something else gets an ADD at its created_at (one with no
    entry at all gets it from the import), so every memory has the history Mnemo would have
    written, and an archived memory without an archive entry gets one at its
    archived_at. Entries about links, and events that do not map, are skipped
    with a reason (the links themselves are imported);
  * brain_source_trust -> source trust; brain_policy -> the brain policy;
  * conflict resolutions, entity aliases and watches are skipped with a reason (their
    webhook secrets are not in an export, and conflicts are detected again by Mnemo).

A D1 dump holds every brain of the deployment: `--source-brain` (a MemoryVault brain id or
slug) picks one; without it the dump must hold exactly one brain with memories.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.kernel.errors import InvalidInput
from core.memory import policy
from core.transfer.importers.records import (
    RELATIONS,
    HistoryEvent,
    HistoryRecord,
    IdMap,
    JsonObject,
    LinkRecord,
    MemoryRecord,
    MemoryType,
    Options,
    Origin,
    PolicyRecord,
    Record,
    Skip,
    SourceError,
    System,
    TrustRecord,
    clamp01,
    clean_tags,
    epoch_ms,
    json_object,
    settle_facts,
)
from core.transfer.importers.sqlite_source import columns, load_sql_dump, read_json_file, tables

SCHEMA = "memoryvault_export_v1"
_TYPES = ("note", "fact", "journal")
_UNSUPPORTED = {
    "memory_conflict_resolutions": "conflict resolutions are not imported: Mnemo detects "
    "conflicts again",
    "memory_entity_aliases": "entity aliases are not imported",
    "memory_watches": "watches are not imported: their webhook URLs and secrets are not in "
    "the export; create them again",
}
_EVENTS = (
    (("restore", "unarchiv"), "RESTORE"),
    (("archiv",), "ARCHIVE"),
    (("delet", "forget", "forgot", "purg", "remov"), "DELETE"),
    (("updat", "edit", "chang"), "UPDATE"),
    (("sav", "creat", "add", "import", "remember"), "ADD"),
)


class MemoryVaultSource:
    system: System = "memoryvault"
    ids: IdMap

    def __init__(self, paths: list[Path], options: Options) -> None:
        if len(paths) != 1:
            raise SourceError(
                paths[-1] if paths else "-",
                "give exactly one MemoryVault export (.json) or D1 dump (.sql)",
            )
        self.path = paths[0]
        self.options = options
        self.exported_at = 0
        if self.path.suffix.lower() == ".sql":
            self.data = _read_dump(self.path, options.source_brain)
            kind = "D1 SQL dump"
        else:
            self.data, exported = _read_export(self.path)
            kind = "memoryvault_export_v1 export"
            try:
                self.exported_at = epoch_ms(exported, seconds=True) or 0
            except ValueError:
                raise SourceError(self.path, f"exported_at is not a time: {exported!r}") from None
        self.total = sum(len(rows) for rows in self.data.values() if isinstance(rows, list))
        counted = ", ".join(
            f"{len(rows)} {name}"
            for name, rows in self.data.items()
            if isinstance(rows, list) and rows
        )
        self.description = f"MemoryVault {kind} ({counted or 'empty'})"

    def records(self, ids: IdMap) -> Iterator[Record]:
        self.ids = ids
        memories: list[MemoryRecord] = []
        seen_ids: set[str] = set()
        for position, row in enumerate(_rows(self.data, "memories")):
            made = self._memory(position, row)
            if isinstance(made, MemoryRecord) and made.origin.id in seen_ids:
                made = Skip("memory", made.origin.id, "the id appears twice")
            if isinstance(made, Skip):
                yield made
                continue
            seen_ids.add(made.origin.id)
            memories.append(made)
        yield from settle_facts(memories)
        kept = {memory.origin.id: memory for memory in memories}
        yield from self._links(kept)
        yield from self._history(kept)
        yield from self._trust()
        yield from self._policy()
        for name, reason in _UNSUPPORTED.items():
            for position, row in enumerate(_rows(self.data, name)):
                yield Skip(name, _row_name(row, position), reason)

    def _memory(self, position: int, row: dict[str, Any]) -> MemoryRecord | Skip:
        source_id = _row_name(row, position)
        if not isinstance(row.get("id"), str) or not row["id"]:
            return Skip("memory", source_id, "no id")
        content = row.get("content")
        if not isinstance(content, str) or not content.strip():
            return Skip("memory", source_id, "no content")
        kind: MemoryType = row["type"] if row.get("type") in _TYPES else "note"
        key = _text(row.get("key"))
        key = " ".join(key.split()) if key else None
        if kind == "fact" and not key:
            return Skip("memory", source_id, "a fact without a key")
        try:
            created = epoch_ms(row.get("created_at"), seconds=True)
            updated = epoch_ms(row.get("updated_at"), seconds=True)
            archived = epoch_ms(row.get("archived_at"), seconds=True)
        except ValueError as exc:
            return Skip("memory", source_id, f"unreadable time: {exc}")
        if created is None:
            return Skip("memory", source_id, "no created_at")
        tags = row.get("tags")
        tag_list = clean_tags(tags.split(",")) if isinstance(tags, str) else []
        if isinstance(tags, list):
            tag_list = clean_tags(tags)
        return MemoryRecord(
            id=self.ids("memory", source_id),
            content=content.strip(),
            origin=Origin("memoryvault", source_id),
            created_at=created,
            updated_at=updated if updated is not None else created,
            type=kind,
            title=_text(row.get("title")),
            key=key,
            tags=tag_list,
            source=_text(row.get("source")),
            confidence=clamp01(row.get("confidence"), 0.7),
            importance=clamp01(row.get("importance"), 0.5),
            state="archived" if archived is not None else "active",
            archived_at=archived,
            user_id=self.options.user_id,
        )

    def _links(self, kept: dict[str, MemoryRecord]) -> Iterator[Record]:
        seen: set[tuple[str, str, str]] = set()
        for position, row in enumerate(_rows(self.data, "memory_links")):
            name = _row_name(row, position)
            src, dst = str(row.get("from_id") or ""), str(row.get("to_id") or "")
            missing = [end for end in (src, dst) if end not in kept]
            if missing:
                yield Skip("link", name, f"memory {missing[0] or '(none)'} is not imported")
                continue
            relation = str(row.get("relation_type") or "related").strip().lower()
            if relation not in RELATIONS:
                yield Skip("link", name, f"unknown relation type {relation!r}")
                continue
            if (src, dst, relation) in seen:
                yield Skip("link", name, "the same link appears twice")
                continue
            seen.add((src, dst, relation))
            try:
                created = epoch_ms(row.get("created_at"), seconds=True)
            except ValueError as exc:
                yield Skip("link", name, f"unreadable time: {exc}")
                continue
            yield LinkRecord(
                id=self.ids("link", name),
                from_id=kept[src].id,
                to_id=kept[dst].id,
                created_at=created if created is not None else kept[src].created_at,
                origin=Origin("memoryvault", name),
                relation=relation,
                label=_text(row.get("label")),
            )

    def _history(self, kept: dict[str, MemoryRecord]) -> Iterator[Record]:
        entries: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
        for position, row in enumerate(_rows(self.data, "memory_changelog")):
            name = _row_name(row, position)
            entity_type = str(row.get("entity_type") or "")
            entity_id = str(row.get("entity_id") or "")
            event_type = str(row.get("event_type") or "")
            if entity_type != "memory":
                yield Skip("changelog", name, f"a {entity_type or 'untyped'} event: {event_type!r}")
                continue
            if entity_id not in kept:
                yield Skip("changelog", name, f"memory {entity_id or '(none)'} is not imported")
                continue
            event = _event(event_type)
            if event is None:
                yield Skip("changelog", name, f"event {event_type!r} has no history equivalent")
                continue
            try:
                created = epoch_ms(row.get("created_at"), seconds=True)
            except ValueError as exc:
                yield Skip("changelog", name, f"unreadable time: {exc}")
                continue
            memory = kept[entity_id]
            entries.setdefault(entity_id, []).append(
                (created if created is not None else memory.created_at, event, row)
            )
        for source_id, memory in kept.items():
            rows = sorted(entries.get(source_id, []), key=lambda e: (e[0], _row_name(e[2], 0)))
            unrecorded_archive = memory.state == "archived" and all(
                event != "ARCHIVE" for _, event, _ in rows
            )
            # With no row at all the import gives the memory its ADD; with some, it is ours.
            if (rows or unrecorded_archive) and (not rows or rows[0][1] != "ADD"):
                yield self._synthesized(source_id, memory, "ADD", memory.created_at)
            added = False
            for at, event, row in rows:
                # A second "saved" of one memory is MemoryVault upserting it: an update.
                if event == "ADD" and added:
                    event = "UPDATE"
                added = added or event == "ADD"
                entry_id = _row_name(row, 0)
                yield HistoryRecord(
                    id=self.ids("history", entry_id),
                    memory_id=memory.id,
                    event=event,  # type: ignore[arg-type]
                    created_at=at,
                    origin=Origin(
                        "memoryvault",
                        entry_id,
                        {
                            "event_type": row.get("event_type"),
                            "summary": row.get("summary"),
                            "payload": json_object(row.get("payload")),
                        },
                    ),
                    new_memory=memory.content if event == "ADD" else None,
                    user_id=memory.user_id,
                    is_deleted=event == "DELETE",
                )
            if unrecorded_archive:
                at = memory.archived_at if memory.archived_at is not None else memory.updated_at
                yield self._synthesized(source_id, memory, "ARCHIVE", at)

    def _synthesized(
        self, source_id: str, memory: MemoryRecord, event: HistoryEvent, at: int
    ) -> HistoryRecord:
        """A history row the changelog does not have but Mnemo would have written."""
        return HistoryRecord(
            id=self.ids("history", f"{source_id}:{event.lower()}"),
            memory_id=memory.id,
            event=event,
            created_at=at,
            origin=Origin("memoryvault", source_id, {"synthesized": True}),
            new_memory=memory.content if event == "ADD" else None,
            user_id=memory.user_id,
        )

    def _policy(self) -> Iterator[Record]:
        """The fields Mnemo's policy shares with MemoryVault's, checked as an owner's PUT is."""
        stored = self.data.get("brain_policy")
        if not isinstance(stored, dict) or not stored:
            return
        kept: dict[str, Any] = {}
        for name, value in stored.items():
            if name not in policy.FIELDS:
                yield Skip("policy", name, "Mnemo's brain policy has no such field")
                continue
            try:
                policy.build({name: value})
            except InvalidInput as exc:
                yield Skip("policy", name, exc.message)
                continue
            kept[name] = value
        if kept:
            stamps = self.data.get("brain_policy_times")
            created, updated = stamps if isinstance(stamps, tuple) else (None, None)
            # An export carries no policy times: it is as of the export.
            created = created if created is not None else self.exported_at
            yield PolicyRecord(
                kept,
                created_at=created,
                updated_at=updated if updated is not None else created,
            )

    def _trust(self) -> Iterator[Record]:
        for position, row in enumerate(_rows(self.data, "brain_source_trust")):
            key = _text(row.get("source_key"))
            if key is None:
                yield Skip("trust", _row_name(row, position), "no source_key")
                continue
            try:
                created = epoch_ms(row.get("created_at"), seconds=True) or 0
                updated = epoch_ms(row.get("updated_at"), seconds=True)
            except ValueError as exc:
                yield Skip("trust", key, f"unreadable time: {exc}")
                continue
            yield TrustRecord(
                source=key,
                trust=clamp01(row.get("trust"), 0.5),
                created_at=created,
                updated_at=updated if updated is not None else created,
                notes=_text(row.get("notes")),
            )


def _event(event_type: str) -> str | None:
    name = event_type.lower()
    if not name.startswith("memory"):
        return None
    for stems, event in _EVENTS:
        if any(stem in name for stem in stems):
            return event
    return None


def _rows(data: JsonObject, name: str) -> list[JsonObject]:
    rows = data.get(name)
    if not isinstance(rows, list):
        return []
    return [row if isinstance(row, dict) else {} for row in rows]


def _row_name(row: dict[str, Any], position: int) -> str:
    value = row.get("id")
    return str(value) if isinstance(value, str | int) and value != "" else f"#{position}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _read_export(path: Path) -> tuple[JsonObject, Any]:
    document = read_json_file(path)
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise SourceError(path, f'not a MemoryVault export: "schema" must be "{SCHEMA}"', line=1)
    data = document.get("data")
    if not isinstance(data, dict):
        raise SourceError(path, 'a MemoryVault export needs a "data" object', line=1)
    for name, rows in data.items():
        if name != "brain_policy" and rows is not None and not isinstance(rows, list):
            raise SourceError(path, f'"data.{name}" must be a list')
    return data, document.get("exported_at")


def _read_dump(path: Path, source_brain: str | None) -> JsonObject:
    conn = load_sql_dump(path)
    try:
        present = tables(conn)
        if "memories" not in present:
            raise SourceError(path, "no memories table: not a MemoryVault D1 dump")
        brain = _pick_brain(conn, path, present, source_brain)
        data: dict[str, Any] = {}
        for table in (
            "memories",
            "memory_links",
            "memory_changelog",
            "brain_source_trust",
            "memory_conflict_resolutions",
            "memory_entity_aliases",
            "memory_watches",
        ):
            if table not in present:
                continue
            if "brain_id" not in columns(conn, table):
                raise SourceError(path, f"table {table} has no brain_id column")
            cursor = conn.execute(
                f'SELECT * FROM "{table}" WHERE brain_id = ? ORDER BY rowid', (brain,)
            )
            names = [d[0] for d in cursor.description]
            data[table] = [
                {n: v for n, v in zip(names, row, strict=True) if n != "brain_id"}
                for row in cursor.fetchall()
            ]
        if "brain_policies" in present:
            found = conn.execute(
                "SELECT policy_json, created_at, updated_at FROM brain_policies WHERE brain_id = ?",
                (brain,),
            ).fetchone()
            if found is not None:
                data["brain_policy"] = json_object(found[0])
                data["brain_policy_times"] = (
                    epoch_ms(found[1], seconds=True),
                    epoch_ms(found[2], seconds=True),
                )
        return data
    except sqlite3.Error as exc:
        raise SourceError(path, f"reading the dump: {exc}") from None
    finally:
        conn.close()


def _pick_brain(conn: sqlite3.Connection, path: Path, present: set[str], wanted: str | None) -> str:
    with_memories = [
        str(row[0])
        for row in conn.execute("SELECT DISTINCT brain_id FROM memories ORDER BY brain_id")
    ]
    if wanted is not None:
        if "brains" in present:
            found = conn.execute(
                "SELECT id FROM brains WHERE id = ? OR slug = ?", (wanted, wanted)
            ).fetchone()
            if found is not None:
                return str(found[0])
        if wanted in with_memories:
            return wanted
        raise SourceError(path, f"no brain {wanted!r} in the dump")
    if len(with_memories) == 1:
        return with_memories[0]
    if not with_memories:
        raise SourceError(path, "the dump holds no memories")
    raise SourceError(
        path,
        f"the dump holds {len(with_memories)} brains ({', '.join(with_memories)}): "
        "choose one with --source-brain",
    )
