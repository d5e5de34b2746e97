"""Quarantine review: the writes the gate held back (core/memory/gate.py), listed, approved
into memories or rejected. A decision is one transaction with its changelog row; a user-scoped
caller sees and decides only its own user's items, and another tenant's id is a 404."""

from __future__ import annotations

import json
from typing import Any, cast

from sqlalchemy import Connection, Row

from core.events import changelog
from core.kernel import cursor as cursors
from core.kernel.config import Limits
from core.kernel.db.engine import sql
from core.kernel.errors import Conflict, NotFound
from core.kernel.ids import iso, now_ms
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.indexing import Indexer
from core.memory.models import (
    ApprovedRecord,
    DecisionIn,
    MemoryIn,
    QuarantineItemRecord,
    QuarantinePageRecord,
    QuarantineQuery,
)

_COLUMNS = (
    "id, user_id, content, payload, reason, explanation, status, memory_id, created_by, "
    "decided_by, created_at, decided_at"
)


def _out(row: Row[Any]) -> QuarantineItemRecord:
    out = dict(row._mapping)
    out["request"] = json.loads(out.pop("payload"))
    out["created_at"] = iso(out["created_at"])
    out["decided_at"] = iso(out["decided_at"])
    return cast(QuarantineItemRecord, out)


def _visible(scope: Scope, params: dict[str, Any]) -> str:
    params["brain"] = scope.brain_id
    if scope.user_id is None:
        return "brain_id = :brain"
    params["scope_user"] = scope.user_id
    return "brain_id = :brain AND user_id = :scope_user"


def _fetch(conn: Connection, scope: Scope, item_id: str, *, lock: bool = False) -> Row[Any]:
    params: dict[str, Any] = {"id": item_id}
    suffix = " FOR UPDATE" if lock and conn.dialect.name == "postgresql" else ""
    row = conn.execute(
        sql(
            f"SELECT {_COLUMNS} FROM memory_quarantine WHERE {_visible(scope, params)} "
            f"AND id = :id{suffix}"
        ),
        params,
    ).first()
    if row is None:
        raise NotFound(f"no quarantined write {item_id!r}", code="quarantine_not_found")
    return row


def list_items(conn: Connection, scope: Scope, query: QuarantineQuery) -> QuarantinePageRecord:
    """Newest first, with a cursor."""
    params: dict[str, Any] = {}
    where = [_visible(scope, params)]
    if query.status != "all":
        where.append("status = :status")
        params["status"] = query.status
    if query.user_id is not None:
        where.append("user_id = :user")
        params["user"] = query.user_id
    if past := cursors.keyset(query.cursor, params, time="created_at", ident="id"):
        where.append(past)
    params["limit"] = query.limit + 1
    rows = conn.execute(
        sql(
            f"SELECT {_COLUMNS} FROM memory_quarantine WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT :limit"
        ),
        params,
    ).all()
    rows, next_cursor = cursors.page(rows, query.limit)
    return {"results": [_out(r) for r in rows], "next_cursor": next_cursor}


def get(conn: Connection, scope: Scope, item_id: str) -> QuarantineItemRecord:
    return _out(_fetch(conn, scope, item_id))


def request_of(conn: Connection, scope: Scope, item_id: str) -> MemoryIn:
    """The held write as a memory, for its vector to be made before approval's transaction."""
    return MemoryIn.model_validate(json.loads(_fetch(conn, scope, item_id).payload))


def _pending(row: Row[Any]) -> None:
    if row.status != "pending":
        raise Conflict(
            f"this write was already {row.status}", code="quarantine_decided",
            details={"status": row.status, "memory_id": row.memory_id},
        )  # fmt: skip


def approve(
    conn: Connection,
    scope: Scope,
    item_id: str,
    limits: Limits,
    index: Indexer,
    data: DecisionIn | None = None,
) -> ApprovedRecord:
    """Save the held write as a memory, as it was asked for: the reviewer's decision stands,
    so the gate does not screen it again (an exact copy still returns the existing memory)."""

    scope.require_write()
    data = data or DecisionIn()
    row = _fetch(conn, scope, item_id, lock=True)
    _pending(row)
    request = MemoryIn.model_validate(json.loads(row.payload))
    memory = memories.create(conn, scope, request, limits, index, screen=False)
    _decide(conn, scope, row, "approved", memory["id"], data)
    return {"item": get(conn, scope, item_id), "memory": memory}


def reject(
    conn: Connection, scope: Scope, item_id: str, data: DecisionIn | None = None
) -> QuarantineItemRecord:
    scope.require_write()
    data = data or DecisionIn()
    row = _fetch(conn, scope, item_id, lock=True)
    _pending(row)
    _decide(conn, scope, row, "rejected", None, data)
    return get(conn, scope, item_id)


def _decide(
    conn: Connection,
    scope: Scope,
    row: Row[Any],
    status: str,
    memory_id: str | None,
    data: DecisionIn,
) -> None:
    now = now_ms()
    by = data.actor_id or scope.principal
    conn.execute(
        sql(
            "UPDATE memory_quarantine SET status = :status, memory_id = :memory, "
            "decided_by = :by, decided_at = :now WHERE brain_id = :brain AND id = :id"
        ),
        {
            "status": status,
            "memory": memory_id,
            "by": by,
            "now": now,
            "brain": scope.brain_id,
            "id": row.id,
        },
    )
    changelog.record(
        conn,
        scope,
        event_type=f"quarantine.{status}",
        entity_type="quarantine",
        entity_id=row.id,
        summary=f"{status.capitalize()} a quarantined write ({row.reason}): "
        + changelog.preview(row.content),
        user_id=row.user_id,
        actor_id=data.actor_id,
        payload={"reason": row.reason, "memory_id": memory_id, "note": data.note},
        at=now,
    )


def pending_count(conn: Connection, scope: Scope, user_id: str | None = None) -> int:
    params: dict[str, Any] = {}
    where = _visible(scope, params) + " AND status = 'pending'"
    if user_id is not None:
        where += " AND user_id = :user"
        params["user"] = user_id
    return int(
        conn.execute(sql(f"SELECT count(*) FROM memory_quarantine WHERE {where}"), params).scalar()
        or 0
    )
