"""Merge 2 to 20 memories into one, in one transaction.

The result is a new memory (content joined, or the content supplied) or, with `into_id`, one
of the memories itself (its content kept unless content is supplied). Tags are united,
importance and confidence are the highest of the sources. Every link of a source moves to the
result; a link that would join the result to itself or repeat one it already has is dropped.
The sources are archived with `superseded_by` set and a `supersedes` link from the result;
their open conflicts become moot, and aliases that named a source as canonical name the result.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Row

from core.curation.conflicts import mark_superseded
from core.curation.models import MergeRecord
from core.events import changelog, history
from core.graph import links
from core.kernel.config import Limits
from core.kernel.db.engine import sql
from core.kernel.db.id_lists import id_table
from core.kernel.errors import Conflict, InvalidInput, MnemoError, NotFound
from core.kernel.ids import now_ms
from core.kernel.scope import Scope
from core.memory import lifecycle
from core.memory import store as memory_store
from core.memory.indexing import Indexer, document_text
from core.memory.models import MemoryIn, MemoryPatch, MemoryRecord, SaveRecord
from core.memory.store import COLUMNS

MIN_SOURCES = 2
MAX_SOURCES = 20


def load(conn: Connection, scope: Scope, ids: list[str], *, lock: bool = True) -> list[Row[Any]]:
    """The memories, locked (unless `lock` is off), in the order they were made; 404 for any
    not in scope."""
    params: dict[str, Any] = {}
    members, value = id_table(conn, "ids")
    params["ids"] = value(ids)
    where = scope.where(params, "m.")
    join = "CROSS JOIN" if conn.dialect.name == "sqlite" else "JOIN"
    selected = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
    suffix = " FOR UPDATE OF m" if lock and conn.dialect.name == "postgresql" else ""
    rows = conn.execute(
        sql(
            f"SELECT {selected} FROM {members} {join} memories m ON m.id = c.value "
            f"WHERE {where}{suffix}"
        ),
        params,
    ).all()
    found = {row.id: row for row in rows}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(
            f"no memory {missing[0]!r}", code="memory_not_found", details={"ids": missing}
        )
    return sorted(found.values(), key=lambda row: (row.created_at, row.id))


def check_sources(ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        raise InvalidInput("ids must not repeat", details={"field": "ids"})
    if not MIN_SOURCES <= len(ids) <= MAX_SOURCES:
        raise InvalidInput(
            f"merge takes {MIN_SOURCES} to {MAX_SOURCES} memories, got {len(ids)}",
            code="merge_size",
            details={"field": "ids", "min": MIN_SOURCES, "max": MAX_SOURCES},
        )


def _common(rows: list[Row[Any]], name: str) -> Any:
    values = {getattr(row, name) for row in rows}
    return values.pop() if len(values) == 1 else None


def _joined(rows: list[Row[Any]]) -> str:
    return "\n\n".join(dict.fromkeys(row.content.strip() for row in rows))


def merge(
    conn: Connection,
    scope: Scope,
    ids: list[str],
    *,
    limits: Limits,
    index: Indexer,
    content: str | None = None,
    title: str | None = None,
    into_id: str | None = None,
    actor_id: str | None = None,
    role: str | None = None,
) -> MergeRecord:
    scope.require_write()
    check_sources(ids)
    if into_id is not None and into_id not in ids:
        raise InvalidInput("into_id must be one of ids", details={"field": "into_id"})
    rows = load(conn, scope, ids)
    inactive = [row.id for row in rows if row.state != "active"]
    if inactive:
        raise Conflict(
            "only active memories can be merged: restore these first",
            code="memory_not_active",
            details={"ids": inactive},
        )
    if len({row.user_id for row in rows}) > 1:
        raise InvalidInput(
            "the memories belong to different users; merge within one user",
            code="mixed_users",
            details={"field": "ids"},
        )
    now = now_ms()
    sources = [row for row in rows if row.id != into_id]
    source_ids = [row.id for row in sources]
    lifecycle.archive_for_merge(conn, scope, source_ids, now=now)
    tags = _merged_tags(rows)
    importance = max(float(row.importance) for row in rows)
    confidence = max(float(row.confidence) for row in rows)
    if into_id is not None:
        kept = next(row for row in rows if row.id == into_id)
        patch = MemoryPatch.model_validate(
            {
                "tags": tags,
                "importance": importance,
                "confidence": confidence,
                **({"content": content} if content is not None else {}),
                **({"title": title} if title is not None else {}),
                "actor_id": actor_id,
                "role": role,
            }
        )
        result: MemoryRecord | SaveRecord = memory_store.update(
            conn, scope, kept.id, patch, limits, index
        )
    else:
        data = _merged_input(rows, content, title, tags, importance, confidence)
        result = memory_store.create(
            conn, scope, data.model_copy(update={"actor_id": actor_id, "role": role}), limits, index
        )
    result_id = result["id"]
    moved, dropped = links.repoint(conn, scope.brain_id, source_ids, result_id)
    lifecycle.merged(
        conn, scope, sources, result_id, now=now, index=index, actor_id=actor_id, role=role
    )
    mark_superseded(conn, scope.brain_id, source_ids, now)
    _move_aliases(conn, scope.brain_id, source_ids, result_id, now)
    history.record(
        conn,
        history.entry(
            scope,
            memory_id=result_id,
            user_id=result["user_id"],
            event="UPDATE",
            old=result["content"],
            new=result["content"],
            detail={"merged_from": source_ids, "links_moved": moved, "links_dropped": dropped},
            actor_id=actor_id,
            role=role,
            at=max(now, now_ms()),  # after the result's own ADD or UPDATE row
        ),
    )
    changelog.record(
        conn,
        scope,
        event_type="memory.merged",
        entity_type="memory",
        entity_id=result_id,
        summary=f"Merged {len(sources)} memories: {changelog.preview(result['content'])}",
        user_id=result["user_id"],
        actor_id=actor_id,
        payload={"sources": source_ids, "links_moved": moved, "links_dropped": dropped},
        at=now,
    )
    return {
        "memory": memory_store.get(conn, scope, result_id),
        "merged_ids": source_ids,
        "links_moved": moved,
        "links_dropped": dropped,
    }


def _merged_tags(rows: list[Row[Any]]) -> list[str]:
    return list(dict.fromkeys(tag for row in rows for tag in json.loads(row.tags)))


def planned_text(
    conn: Connection,
    scope: Scope,
    ids: list[str],
    *,
    content: str | None = None,
    title: str | None = None,
    into_id: str | None = None,
) -> str | None:
    """The text the merge's result will be indexed by, read ahead so it is embedded before the
    write transaction (a remote embedder makes a network call). None when the merge cannot go
    as asked: the merge itself then says why. Should the memories change in between, the
    write embeds what it finds."""
    try:
        scope.require_write()  # no embedding for a caller the merge will refuse
        check_sources(ids)
        rows = load(conn, scope, ids, lock=False)
    except MnemoError:
        return None
    tags = _merged_tags(rows)
    if into_id is not None:
        kept = next((row for row in rows if row.id == into_id), None)
        if kept is None:
            return None
        return document_text(
            title if title is not None else kept.title,
            kept.key,
            MemoryPatch.model_validate({"tags": tags}).tags or [],  # cleaned, as the patch is
            content if content is not None else kept.content,
        )
    try:
        data = _merged_input(rows, content, title, tags, importance=0.5, confidence=0.5)
    except ValidationError:
        return None
    return document_text(data.title, data.key, data.tags, data.content)


def _merged_input(
    rows: list[Row[Any]],
    content: str | None,
    title: str | None,
    tags: list[str],
    importance: float,
    confidence: float,
) -> MemoryIn:
    kind = _common(rows, "type") or "note"
    key = _common(rows, "key")
    if kind == "fact" and key is None:
        kind = "note"
    metadata: dict[str, Any] = {}
    for row in rows:  # the newest source wins a clash
        metadata.update(json.loads(row.metadata))
    occurred = [row.occurred_at for row in rows if row.occurred_at is not None]
    return MemoryIn.model_validate(
        {
            "content": content if content is not None else _joined(rows),
            "type": kind,
            "title": title if title is not None else next((r.title for r in rows if r.title), None),
            "key": key,
            "tags": tags,
            "source": _common(rows, "source"),
            "confidence": confidence,
            "importance": importance,
            "metadata": metadata,
            "user_id": rows[0].user_id,
            "agent_id": _common(rows, "agent_id"),
            "run_id": _common(rows, "run_id"),
            "occurred_at": min(occurred) / 1000 if occurred else None,
        }
    )


def _move_aliases(
    conn: Connection, brain_id: str, source_ids: list[str], result_id: str, now: int
) -> None:
    members, value = id_table(conn, "ids")
    params = {"brain": brain_id, "ids": value(source_ids), "result": result_id, "now": now}
    # A source that was an alias is archived now; the result names its entity instead.
    conn.execute(
        sql(
            "DELETE FROM memory_entity_aliases WHERE brain_id = :brain AND (alias_memory_id IN "
            f"(SELECT value FROM {members}) OR (alias_memory_id = :result AND "
            f"canonical_memory_id IN (SELECT value FROM {members})))"
        ),
        params,
    )
    # Aliases stay one level deep: when the result (an `into_id`) is itself an alias, the
    # sources' aliases follow it to its canonical memory.
    above = conn.execute(
        sql(
            "SELECT canonical_memory_id FROM memory_entity_aliases "
            "WHERE brain_id = :brain AND alias_memory_id = :result"
        ),
        params,
    ).scalar()
    conn.execute(
        sql(
            "UPDATE memory_entity_aliases SET canonical_memory_id = :canonical, updated_at = :now "
            f"WHERE brain_id = :brain AND canonical_memory_id IN (SELECT value FROM {members})"
        ),
        {**params, "canonical": above or result_id},
    )
