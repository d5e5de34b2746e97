"""mem0's entities: the users, agents and runs a brain's active memories belong to, and
deleting one (all its memories, each soft-deleted with its DELETE history row)."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Connection

from core.kernel.db.engine import sql
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.ids import iso
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.indexing import Indexer
from core.memory.models import EntityRecord

Kind = Literal["user", "agent", "run"]
KINDS: dict[str, str] = {"user": "user_id", "agent": "agent_id", "run": "run_id"}
_KINDS: tuple[tuple[Kind, str], ...] = (
    ("user", "user_id"),
    ("agent", "agent_id"),
    ("run", "run_id"),
)


def _visible(scope: Scope, params: dict[str, Any]) -> str:
    params["brain"] = scope.brain_id
    if scope.user_id is None:
        return "brain_id = :brain"
    params["scope_user"] = scope.user_id
    return "brain_id = :brain AND user_id = :scope_user"


def list_entities(conn: Connection, scope: Scope) -> list[EntityRecord]:
    """Every user, agent and run with active memories, with how many and when."""
    out: list[EntityRecord] = []
    for kind, column in _KINDS:
        params: dict[str, Any] = {}
        rows = conn.execute(
            sql(
                f"SELECT {column} AS name, count(*) AS n, min(created_at) AS first, "
                f"max(updated_at) AS last FROM memories WHERE {_visible(scope, params)} "
                f"AND state = 'active' AND {column} IS NOT NULL GROUP BY {column} "
                f"ORDER BY {column}"
            ),
            params,
        ).all()
        out.extend(
            {
                "type": kind,
                "name": row.name,
                "total_memories": int(row.n),
                "created_at": iso(row.first),
                "updated_at": iso(row.last),
            }
            for row in rows
        )
    return out


def delete_memories(
    conn: Connection,
    scope: Scope,
    index: Indexer,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    actor_id: str | None = None,
) -> int:
    """Soft-delete every active or archived memory of these entities (ANDed); how many."""
    scope.require_write()
    given = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    if not any(given.values()):
        raise InvalidInput(
            "name at least one of user_id, agent_id or run_id whose memories to delete",
            code="entity_required",
            details={"field": "user_id"},
        )
    params: dict[str, Any] = {}
    where = [_visible(scope, params), "state <> 'deleted'"]
    for column, value in given.items():
        if value is not None:
            where.append(f"{column} = :e_{column}")
            params[f"e_{column}"] = value
    ids = conn.execute(
        sql(f"SELECT id FROM memories WHERE {' AND '.join(where)} ORDER BY id"), params
    ).scalars()
    count = 0
    for memory_id in list(ids):
        memories.set_state(conn, scope, memory_id, "deleted", index, actor_id=actor_id)
        count += 1
    return count


def delete_entity(
    conn: Connection, scope: Scope, kind: str, name: str, index: Indexer, *, actor_id: str | None
) -> int:
    column = KINDS.get(kind)
    if column is None:
        raise NotFound(
            f"no entity type {kind!r}: Mnemo has user, agent and run",
            code="entity_not_found",
        )
    deleted = delete_memories(conn, scope, index, actor_id=actor_id, **{column: name})
    if deleted == 0:
        raise NotFound(f"no {kind} {name!r} with memories", code="entity_not_found")
    return deleted
