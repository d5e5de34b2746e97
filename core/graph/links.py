"""Typed links between memories: create, read, delete, and list a memory's links both ways.

A link joins two memories of one brain and one end user (a user-scoped key never sees another
user's memories, and a link must not let a walk cross from one user to another): anything else
is the same 404 as a memory the caller cannot see. Links are directed and unique on
(from, to, relation), so the same pair may carry several relations, and A->B and B->A are two
links. Each creation and deletion writes its changelog row in the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Row

from core.events import changelog
from core.graph.models import (
    LinkDeletedRecord,
    LinkIn,
    LinkPageRecord,
    LinkRecord,
    LinkViewRecord,
    MemoryRefRecord,
    NewLinkRecord,
    SavedLinkRecord,
)
from core.kernel import cursor as cursors
from core.kernel.db.engine import sql
from core.kernel.db.id_lists import id_table
from core.kernel.errors import Conflict, InvalidInput, NotFound
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope

LINK_COLUMNS = "id, from_id, to_id, relation, label, weight, origin, created_by, created_at"
LINK_NAMES = tuple(name.strip() for name in LINK_COLUMNS.split(","))


def member_of(conn: Connection, column: str, name: str) -> tuple[str, Callable[[list[str]], Any]]:
    """`column` IN a list of ids bound as ONE value (a JSON array on SQLite, a text[] on
    PostgreSQL): a frontier of a few thousand ids would cost more to bind one by one than the
    query costs to run. Returns the SQL and how to bind the list."""
    if conn.dialect.name == "postgresql":
        return f"{column} = ANY(CAST(:{name} AS text[]))", list
    return f"{column} IN (SELECT value FROM json_each(:{name}))", json.dumps


def link_dict(row: Row[Any] | Mapping[str, Any], prefix: str = "") -> LinkRecord:
    """A link row (its columns optionally prefixed, as in a join) as the API shows it."""
    mapping: Any = row._mapping if isinstance(row, Row) else row
    out = {name: mapping[prefix + name] for name in LINK_NAMES}
    out["weight"] = float(out["weight"])
    out["created_at"] = iso(out["created_at"])
    return cast(LinkRecord, out)


def memory_ref(row: Any) -> MemoryRefRecord:
    return {
        "id": row.id,
        "type": row.type,
        "title": row.title,
        "key": row.key,
        "preview": changelog.preview(row.content),
        "state": row.state,
        "user_id": row.user_id,
    }


def visible_memory(
    conn: Connection, scope: Scope, memory_id: str, *, field: str | None = None
) -> Row[Any]:
    """A memory the scope can see (its brain, its user if scoped), or the usual 404."""
    params: dict[str, Any] = {"id": memory_id}
    where = f"{scope.where(params)} AND id = :id"
    row = conn.execute(
        sql(
            "SELECT id, user_id, type, title, key, content, state, tags, source, created_at "
            f"FROM memories WHERE {where}"
        ),
        params,
    ).first()
    if row is None:
        raise NotFound(
            f"no memory {memory_id!r}",
            code="memory_not_found",
            details=None if field is None else {"field": field},
        )
    return row


def _existing(
    conn: Connection, brain_id: str, from_id: str, to_id: str, relation: str
) -> Row[Any] | None:
    return conn.execute(
        sql(
            f"SELECT {LINK_COLUMNS} FROM memory_links WHERE brain_id = :brain "
            "AND from_id = :from_id AND to_id = :to_id AND relation = :relation"
        ),
        {"brain": brain_id, "from_id": from_id, "to_id": to_id, "relation": relation},
    ).first()


def insert(
    conn: Connection,
    brain_id: str,
    rows: Sequence[NewLinkRecord],
) -> None:
    """Insert links already checked; each row has from_id, to_id, relation, label, weight,
    origin, created_by, and gets an id and created_at here (set on the dicts)."""
    now = now_ms()
    for row in rows:
        row.setdefault("id", new_id())
        row.setdefault("created_at", now)
    conn.execute(
        sql(
            "INSERT INTO memory_links (id, brain_id, from_id, to_id, relation, label, weight, "
            "origin, created_by, created_at) VALUES (:id, :brain, :from_id, :to_id, :relation, "
            ":label, :weight, :origin, :created_by, :created_at)"
        ),
        [{**row, "brain": brain_id} for row in rows],
    )


def record_created(
    conn: Connection, scope: Scope, rows: Sequence[NewLinkRecord], user_id: str | None
) -> None:
    """The changelog rows of new links (one each), in the links' transaction."""
    for row in rows:
        changelog.record(
            conn,
            scope,
            event_type="link.created",
            entity_type="link",
            entity_id=row["id"],
            summary=f"Linked {row['from_id']} -{row['relation']}-> {row['to_id']}"
            + (f" ({row['origin']})" if row["origin"] != "manual" else ""),
            user_id=user_id,
            actor_id=row["created_by"],
            payload={
                k: row[k] for k in ("from_id", "to_id", "relation", "label", "weight", "origin")
            },
            at=row["created_at"],
        )


def create(conn: Connection, scope: Scope, data: LinkIn) -> SavedLinkRecord:
    scope.require_write()
    if data.from_id == data.to_id:
        raise InvalidInput(
            "a memory cannot link to itself: from_id and to_id must differ",
            code="self_link",
            details={"field": "to_id"},
        )
    source = visible_memory(conn, scope, data.from_id, field="from_id")
    target = visible_memory(conn, scope, data.to_id, field="to_id")
    if source.user_id != target.user_id:
        # Two users' memories are as unrelated as two brains' ones: say no more than a 404 does.
        raise NotFound(
            f"no memory {data.to_id!r} in the same user scope as {data.from_id!r}",
            code="memory_not_found",
            details={"field": "to_id"},
        )
    for end, row in (("from_id", source), ("to_id", target)):
        if row.state == "deleted":
            raise Conflict(
                f"memory {row.id!r} is deleted: restore it before linking it",
                code="memory_deleted",
                details={"field": end},
            )
    existing = _existing(conn, scope.brain_id, data.from_id, data.to_id, data.relation)
    if existing is not None:
        asked = data.model_fields_set
        if ("label" in asked and data.label != existing.label) or (
            "weight" in asked and abs(data.weight - float(existing.weight)) > 1e-9
        ):
            raise Conflict(
                f"a {data.relation!r} link from {data.from_id!r} to {data.to_id!r} already "
                "exists with another label or weight: delete it first to change them",
                code="link_exists",
                details={"existing_id": existing.id},
            )
        return {**link_dict(existing), "deduplicated": True}
    link: NewLinkRecord = {
        "from_id": data.from_id,
        "to_id": data.to_id,
        "relation": data.relation,
        "label": data.label,
        "weight": data.weight,
        "origin": "manual",
        "created_by": data.actor_id or scope.principal,
    }
    insert(conn, scope.brain_id, [link])
    record_created(conn, scope, [link], source.user_id)
    return {**link_dict(link), "deduplicated": False}


def _fetch(conn: Connection, scope: Scope, link_id: str) -> Row[Any]:
    """A link whose two ends the scope can see."""
    params: dict[str, Any] = {"brain": scope.brain_id, "id": link_id}
    user = ""
    if scope.user_id is not None:
        user = " AND f.user_id = :scope_user AND t.user_id = :scope_user"
        params["scope_user"] = scope.user_id
    columns = ", ".join(f"l.{name}" for name in LINK_NAMES)
    row = conn.execute(
        sql(
            f"SELECT {columns}, f.user_id AS owner FROM memory_links l "
            "JOIN memories f ON f.id = l.from_id JOIN memories t ON t.id = l.to_id "
            f"WHERE l.brain_id = :brain AND l.id = :id{user}"
        ),
        params,
    ).first()
    if row is None:
        raise NotFound(f"no link {link_id!r}", code="link_not_found")
    return row


def get(conn: Connection, scope: Scope, link_id: str) -> LinkRecord:
    return link_dict(_fetch(conn, scope, link_id))


def delete(
    conn: Connection, scope: Scope, link_id: str, *, actor_id: str | None = None
) -> LinkDeletedRecord:
    scope.require_write()
    row = _fetch(conn, scope, link_id)
    conn.execute(
        sql("DELETE FROM memory_links WHERE brain_id = :brain AND id = :id"),
        {"brain": scope.brain_id, "id": link_id},
    )
    changelog.record(
        conn,
        scope,
        event_type="link.deleted",
        entity_type="link",
        entity_id=link_id,
        summary=f"Unlinked {row.from_id} -{row.relation}-> {row.to_id}",
        user_id=row.owner,
        actor_id=actor_id,
        payload={"from_id": row.from_id, "to_id": row.to_id, "relation": row.relation},
    )
    return {"id": link_id, "deleted": True}


def repoint(
    conn: Connection, brain_id: str, source_ids: list[str], result_id: str
) -> tuple[int, int]:
    """Re-point every link of the memories `source_ids` at `result_id` (a merge's result);
    a link that would join the result to itself or repeat one it has is dropped. Returns
    (moved, dropped)."""
    members, value = id_table(conn, "ids")
    touching = [*source_ids, result_id]
    links = conn.execute(
        sql(
            "SELECT id, from_id, to_id, relation, weight, created_at FROM memory_links "
            f"WHERE brain_id = :brain AND (from_id IN (SELECT value FROM {members}) "
            f"OR to_id IN (SELECT value FROM {members}))"
        ),
        {"brain": brain_id, "ids": value(touching)},
    ).all()
    sources = set(source_ids)
    kept = {
        (link.from_id, link.to_id, link.relation)
        for link in links
        if link.from_id not in sources and link.to_id not in sources
    }
    moved = dropped = 0
    # The strongest link of a set that collapses into one is the one kept.
    for link in sorted(links, key=lambda row: (-float(row.weight), row.created_at, row.id)):
        if link.from_id not in sources and link.to_id not in sources:
            continue
        start = result_id if link.from_id in sources else link.from_id
        end = result_id if link.to_id in sources else link.to_id
        params = {"brain": brain_id, "id": link.id, "start": start, "end": end}
        if start == end or (start, end, link.relation) in kept:
            conn.execute(
                sql("DELETE FROM memory_links WHERE brain_id = :brain AND id = :id"), params
            )
            dropped += 1
            continue
        conn.execute(
            sql(
                "UPDATE memory_links SET from_id = :start, to_id = :end "
                "WHERE brain_id = :brain AND id = :id"
            ),
            params,
        )
        kept.add((start, end, link.relation))
        moved += 1
    return moved, dropped


def _sides(direction: str) -> list[tuple[str, str, str]]:
    """(direction, the memory's column, the other end's column) for each side asked for."""
    sides = [("out", "from_id", "to_id"), ("in", "to_id", "from_id")]
    return [s for s in sides if direction in ("both", s[0])]


def list_for(
    conn: Connection,
    scope: Scope,
    memory_id: str,
    *,
    direction: str = "both",
    relations: Sequence[str] = (),
    limit: int = 50,
    cursor: str | None = None,
) -> LinkPageRecord:
    """A memory's links, newest first, with the memory at the other end of each."""
    visible_memory(conn, scope, memory_id)
    params: dict[str, Any] = {"brain": scope.brain_id, "id": memory_id, "limit": limit + 1}
    extra = ""
    if scope.user_id is not None:
        extra += " AND m.user_id = :scope_user"
        params["scope_user"] = scope.user_id
    if relations:
        names = [f"r_{i}" for i in range(len(relations))]
        params.update(zip(names, relations, strict=True))
        extra += f" AND l.relation IN ({', '.join(':' + n for n in names)})"
    if past := cursors.keyset(cursor, params, time="l.created_at", ident="l.id"):
        extra += f" AND {past}"
    columns = ", ".join(f"l.{name}" for name in LINK_NAMES)
    parts = [
        f"SELECT {columns}, '{side}' AS direction, m.id AS m_id, m.type, m.title, m.key, "
        f"m.content, m.state, m.user_id FROM memory_links l JOIN memories m ON m.id = l.{far} "
        f"WHERE l.brain_id = :brain AND l.{near} = :id AND m.brain_id = :brain{extra}"
        for side, near, far in _sides(direction)
    ]
    rows = conn.execute(
        sql(
            f"SELECT * FROM ({' UNION ALL '.join(parts)}) x "
            "ORDER BY created_at DESC, id DESC LIMIT :limit"
        ),
        params,
    ).all()
    rows, next_cursor = cursors.page(rows, limit)
    results: list[LinkViewRecord] = [
        {
            **link_dict(row),
            "direction": row.direction,
            "memory": {
                "id": row.m_id,
                "type": row.type,
                "title": row.title,
                "key": row.key,
                "preview": changelog.preview(row.content),
                "state": row.state,
                "user_id": row.user_id,
            },
        }
        for row in rows
    ]
    return {"results": results, "next_cursor": next_cursor}
