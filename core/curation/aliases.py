"""Entity aliases: memories that name the same entity as a canonical memory ("Bob", "Robert
Smith", "our CTO"), optionally archived so only the canonical one is found.

Aliases are one level deep: a canonical memory is never itself an alias, and when a memory
that was canonical for others becomes an alias, its aliases move to the new canonical memory.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row

from core.curation.merge import load
from core.curation.models import AliasDeletedRecord, AliasesRecord, AliasRecord
from core.events import changelog, history
from core.kernel.db.engine import sql
from core.kernel.db.id_lists import id_table
from core.kernel.errors import Conflict, InvalidInput, NotFound
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope
from core.memory import lifecycle
from core.memory.indexing import Indexer
from core.memory.store import to_dict

MAX_ALIASES = 100
_COLUMNS = "id, canonical_memory_id, alias_memory_id, note, confidence, created_at, updated_at"


def _to_dict(row: Any) -> AliasRecord:
    """The alias row; its memory is set by the caller."""
    return {
        "id": row.id,
        "canonical_memory_id": row.canonical_memory_id,
        "alias_memory_id": row.alias_memory_id,
        "note": row.note,
        "confidence": row.confidence,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "memory": None,
    }


def _canonical_of(conn: Connection, brain_id: str, memory_id: str) -> str | None:
    found = conn.execute(
        sql(
            "SELECT canonical_memory_id FROM memory_entity_aliases "
            "WHERE brain_id = :brain AND alias_memory_id = :id"
        ),
        {"brain": brain_id, "id": memory_id},
    ).scalar()
    return None if found is None else str(found)


def add(
    conn: Connection,
    scope: Scope,
    canonical_id: str,
    alias_ids: list[str],
    *,
    archive: bool,
    note: str | None,
    confidence: float,
    index: Indexer,
    actor_id: str | None = None,
    role: str | None = None,
) -> AliasesRecord:
    scope.require_write()
    if len(set(alias_ids)) != len(alias_ids) or not 1 <= len(alias_ids) <= MAX_ALIASES:
        raise InvalidInput(
            f"alias_ids takes 1 to {MAX_ALIASES} distinct ids", details={"field": "alias_ids"}
        )
    if canonical_id in alias_ids:
        raise InvalidInput(
            "a memory cannot be an alias of itself", code="self_alias", details={"field": "ids"}
        )
    rows = {row.id: row for row in load(conn, scope, [canonical_id, *alias_ids])}
    canonical = rows[canonical_id]
    if any(row.user_id != canonical.user_id for row in rows.values()):
        raise InvalidInput(
            "aliases and their canonical memory must belong to the same user",
            code="mixed_users",
            details={"field": "alias_ids"},
        )
    if canonical.state == "deleted":
        raise Conflict("the canonical memory is deleted", code="memory_not_active")
    above = _canonical_of(conn, scope.brain_id, canonical_id)
    if above is not None:
        raise Conflict(
            "the canonical memory is itself an alias: name its canonical memory instead",
            code="canonical_is_alias",
            details={"canonical_id": above},
        )
    now = now_ms()
    members, value = id_table(conn, "ids")
    params = {
        "brain": scope.brain_id,
        "ids": value(alias_ids),
        "canonical": canonical_id,
        "now": now,
    }
    # Aliases of the new aliases follow them to the canonical memory (one level deep).
    conn.execute(
        sql(
            "UPDATE memory_entity_aliases SET canonical_memory_id = :canonical, updated_at = :now "
            f"WHERE brain_id = :brain AND canonical_memory_id IN (SELECT value FROM {members})"
        ),
        params,
    )
    results = []
    for alias_id in alias_ids:
        alias = rows[alias_id]
        conn.execute(
            sql(
                "INSERT INTO memory_entity_aliases (id, brain_id, canonical_memory_id, "
                "alias_memory_id, note, confidence, created_at, updated_at) VALUES (:id, :brain, "
                ":canonical, :alias, :note, :confidence, :now, :now) "
                "ON CONFLICT (brain_id, alias_memory_id) DO UPDATE SET "
                "canonical_memory_id = excluded.canonical_memory_id, note = excluded.note, "
                "confidence = excluded.confidence, updated_at = excluded.updated_at"
            ),
            {
                "id": new_id(),
                "brain": scope.brain_id,
                "canonical": canonical_id,
                "alias": alias_id,
                "note": note,
                "confidence": confidence,
                "now": now,
            },
        )
        lifecycle.make_alias(
            conn,
            scope,
            alias,
            canonical_id,
            archive=archive,
            now=now,
            index=index,
            actor_id=actor_id,
            role=role,
        )
    history.record(
        conn,
        history.entry(
            scope,
            memory_id=canonical_id,
            user_id=canonical.user_id,
            event="UPDATE",
            old=canonical.content,
            new=canonical.content,
            detail={"reason": "alias", "aliases_added": alias_ids},
            actor_id=actor_id,
            role=role,
            at=now,
        ),
    )
    results = _aliases_of(conn, scope, canonical_id)
    return {"canonical_id": canonical_id, "results": results}


def _aliases_of(conn: Connection, scope: Scope, canonical_id: str) -> list[AliasRecord]:
    rows = conn.execute(
        sql(
            f"SELECT {_COLUMNS} FROM memory_entity_aliases WHERE brain_id = :brain "
            "AND canonical_memory_id = :id ORDER BY created_at, id LIMIT 1000"
        ),
        {"brain": scope.brain_id, "id": canonical_id},
    ).all()
    items = [_to_dict(row) for row in rows]
    if items:
        memories = {m.id: m for m in _visible(conn, scope, [i["alias_memory_id"] for i in items])}
        for item in items:
            found = memories.get(item["alias_memory_id"])
            item["memory"] = None if found is None else to_dict(found)
    return items


def _visible(conn: Connection, scope: Scope, ids: list[str]) -> list[Row[Any]]:
    try:
        return load(conn, scope, ids)
    except NotFound:
        return []


def list_for(conn: Connection, scope: Scope, memory_id: str) -> AliasesRecord:
    """The entity a memory belongs to: its canonical memory and every alias of it."""
    load(conn, scope, [memory_id])
    canonical_id = _canonical_of(conn, scope.brain_id, memory_id) or memory_id
    return {"canonical_id": canonical_id, "results": _aliases_of(conn, scope, canonical_id)}


def delete(
    conn: Connection, scope: Scope, alias_id: str, *, actor_id: str | None = None
) -> AliasDeletedRecord:
    """The alias mapping goes; an archived alias memory stays archived (restore it if wanted)."""
    scope.require_write()
    row = conn.execute(
        sql(f"SELECT {_COLUMNS} FROM memory_entity_aliases WHERE brain_id = :brain AND id = :id"),
        {"brain": scope.brain_id, "id": alias_id},
    ).first()
    if row is None:
        raise NotFound(f"no alias {alias_id!r}", code="alias_not_found")
    try:
        memories = {
            m.id: m for m in load(conn, scope, [row.canonical_memory_id, row.alias_memory_id])
        }
    except NotFound:
        raise NotFound(f"no alias {alias_id!r}", code="alias_not_found") from None
    alias = memories[row.alias_memory_id]
    now = now_ms()
    conn.execute(
        sql("DELETE FROM memory_entity_aliases WHERE brain_id = :brain AND id = :id"),
        {"brain": scope.brain_id, "id": alias_id},
    )
    history.record(
        conn,
        history.entry(
            scope,
            memory_id=alias.id,
            user_id=alias.user_id,
            event="UPDATE",
            old=alias.content,
            new=alias.content,
            detail={"reason": "alias_removed", "alias_of": row.canonical_memory_id},
            actor_id=actor_id,
            role=None,
            at=now,
        ),
    )
    changelog.record(
        conn,
        scope,
        event_type="alias.deleted",
        entity_type="memory",
        entity_id=alias.id,
        summary=f"No longer an alias of {row.canonical_memory_id}",
        user_id=alias.user_id,
        actor_id=actor_id,
        payload={"canonical_id": row.canonical_memory_id, "alias_id": alias_id},
        at=now,
    )
    return {"id": alias_id, "deleted": True}
