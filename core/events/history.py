"""Per-memory history with mem0's semantics: one row per change, old and new text side by side."""

from __future__ import annotations

import json
from typing import Any, TypedDict

from sqlalchemy import Connection

from core.events.models import Event, HistoryEntryRecord
from core.kernel.db.engine import sql
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope

# The row's parameters are prefixed (h_): changelog.record writes it in the changelog row's
# statement on PostgreSQL, where the two share one set of parameters.
INSERT = (
    "INSERT INTO memory_history (id, brain_id, memory_id, user_id, event, old_memory, "
    "new_memory, detail, actor_id, role, is_deleted, created_at) VALUES (:h_id, :brain, "
    ":h_memory, :h_user, :h_event, :h_old, :h_new, :h_detail, :h_actor, :h_role, :h_deleted, "
    ":h_at)"
)


class HistoryRow(TypedDict):
    """A history row as INSERT's parameters (h_ prefixed; `brain` is shared with the
    changelog row's statement)."""

    h_id: str
    brain: str
    h_memory: str
    h_user: str | None
    h_event: Event
    h_old: str | None
    h_new: str | None
    h_detail: str | None
    h_actor: str
    h_role: str | None
    h_deleted: int
    h_at: int


def entry(
    scope: Scope,
    *,
    memory_id: str,
    user_id: str | None,
    event: Event,
    old: str | None,
    new: str | None,
    actor_id: str | None,
    role: str | None,
    detail: dict[str, Any] | None = None,
    at: int | None = None,
) -> HistoryRow:
    """One history row as INSERT's parameters: for `record`, or for changelog.record to write
    with the change's changelog row (one statement where PostgreSQL allows it)."""
    return {
        "h_id": new_id(),
        "brain": scope.brain_id,
        "h_memory": memory_id,
        "h_user": user_id,
        "h_event": event,
        "h_old": old,
        "h_new": new,
        "h_detail": None if detail is None else json.dumps(detail),
        "h_actor": actor_id or scope.principal,
        "h_role": role,
        "h_deleted": int(event == "DELETE"),
        "h_at": now_ms() if at is None else at,
    }


def record(conn: Connection, row: HistoryRow) -> None:
    """Write one history row (`entry`) on its own, where no changelog row goes with it."""
    conn.execute(sql(INSERT), row)


def record_many(conn: Connection, scope: Scope, rows: list[dict[str, Any]]) -> None:
    """`record` for many rows in one executemany (a batch of maintenance changes). Each row
    has memory_id, user_id, event, old, new, detail (a dict or None), actor_id, role and at;
    the actor defaults to the scope's principal, as in `entry`."""
    if rows:
        conn.execute(
            sql(
                "INSERT INTO memory_history (id, brain_id, memory_id, user_id, event, "
                "old_memory, new_memory, detail, actor_id, role, is_deleted, created_at) VALUES "
                "(:id, :brain, :memory, :user, :event, :old, :new, :detail, :actor, :role, "
                ":deleted, :at)"
            ),
            [
                {
                    "id": new_id(),
                    "brain": scope.brain_id,
                    "memory": row["memory_id"],
                    "user": row["user_id"],
                    "event": row["event"],
                    "old": row["old"],
                    "new": row["new"],
                    "detail": None if row["detail"] is None else json.dumps(row["detail"]),
                    "actor": row["actor_id"] or scope.principal,
                    "role": row["role"],
                    "deleted": int(row["event"] == "DELETE"),
                    "at": row["at"],
                }
                for row in rows
            ],
        )


def for_memory(
    conn: Connection, scope: Scope, memory_id: str, *, newest: int | None = None
) -> list[HistoryEntryRecord]:
    """Oldest first. The caller has already checked that the memory is visible to the scope.
    `newest`: only that many of the latest rows (a memory an agent rewrites all day has more
    history than a page should read)."""
    columns = (
        "SELECT id, memory_id, event, old_memory, new_memory, detail, actor_id, role, "
        "is_deleted, created_at, updated_at FROM memory_history "
        "WHERE brain_id = :brain AND memory_id = :memory "
    )
    params: dict[str, Any] = {"brain": scope.brain_id, "memory": memory_id}
    if newest is None:
        rows = list(conn.execute(sql(columns + "ORDER BY created_at, id"), params).mappings())
    else:
        statement = sql(columns + "ORDER BY created_at DESC, id DESC LIMIT :newest")
        rows = list(conn.execute(statement, {**params, "newest": newest}).mappings())
        rows.reverse()
    return [
        {
            "id": row["id"],
            "memory_id": row["memory_id"],
            "event": row["event"],
            "old_memory": row["old_memory"],
            "new_memory": row["new_memory"],
            "detail": None if row["detail"] is None else json.loads(row["detail"]),
            "actor_id": row["actor_id"],
            "role": row["role"],
            "is_deleted": bool(row["is_deleted"]),
            "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"]),
        }
        for row in rows
    ]


def erase(conn: Connection, scope: Scope, memory_id: str) -> None:
    conn.execute(
        sql("DELETE FROM memory_history WHERE brain_id = :brain AND memory_id = :memory"),
        {"brain": scope.brain_id, "memory": memory_id},
    )
