"""Helpers for the hygiene and maintenance tests: memories bulk-inserted straight into the table
(one executemany, so 10,000 rows take well under a second) and clocks moved back."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import Engine, bindparam, text

from core.kernel.db.engine import transaction
from core.kernel.ids import now_ms

DAY = 86_400_000


def insert_memories(
    engine: Engine,
    brain_id: str,
    count: int,
    *,
    idle_days: float = 0,
    importance: float = 0.5,
    user_id: str | None = None,
    prefix: str = "memory",
) -> list[str]:
    """`count` active notes last updated `idle_days` ago; their ids, oldest first."""
    at = now_ms() - int(idle_days * DAY)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        content = f"{prefix} {i} {uuid.uuid4().hex[:8]}"
        rows.append(
            {
                "id": f"{prefix[:4]}-{uuid.uuid4().hex}",
                "brain": brain_id,
                "user": user_id,
                "content": content,
                "hash": hashlib.sha256(content.encode()).hexdigest(),
                "importance": importance,
                # Distinct, increasing times: the keyset order is the insertion order.
                "at": at + i,
            }
        )
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO memories (id, brain_id, user_id, type, content, tags, metadata, "
                "content_hash, importance, created_at, updated_at) VALUES (:id, :brain, :user, "
                "'note', :content, '[]', '{}', :hash, :importance, :at, :at)"
            ),
            rows,
        )
    return [r["id"] for r in rows]


def age(
    engine: Engine, memory_ids: list[str], *, days: float, accessed_days: float | None = None
) -> None:
    """Make memories look last updated `days` ago (and last accessed, if given)."""
    at = now_ms() - int(days * DAY)
    accessed = None if accessed_days is None else now_ms() - int(accessed_days * DAY)
    with transaction(engine) as conn:
        conn.execute(
            text(
                "UPDATE memories SET updated_at = :at, created_at = :at, "
                "last_accessed_at = :accessed WHERE id = :id"
            ),
            [{"at": at, "accessed": accessed, "id": i} for i in memory_ids],
        )


def importance_of(engine: Engine, memory_ids: list[str]) -> dict[str, float]:
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            text("SELECT id, importance FROM memories WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": memory_ids},
        ).all()
    return {r.id: float(r.importance) for r in rows}


def states_of(engine: Engine, memory_ids: list[str]) -> dict[str, str]:
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            text("SELECT id, state FROM memories WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": memory_ids},
        ).all()
    return {r.id: str(r.state) for r in rows}
