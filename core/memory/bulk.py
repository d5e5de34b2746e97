"""Many memories changed in one transaction (mem0's batch update and delete): each change
through `memories.update` or `memories.set_state`, so each has its history and changelog rows,
and one bad id leaves every memory as it was."""

from __future__ import annotations

from sqlalchemy import Connection

from core.kernel.config import Limits
from core.kernel.errors import TooLarge
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.indexing import Indexer
from core.memory.models import MemoryPatch, MemoryRecord


def _bounded(count: int, limits: Limits) -> None:
    if count > limits.batch_items:
        raise TooLarge(
            f"{count} memories in one batch; the limit is {limits.batch_items}",
            code="batch_too_large",
            details={"field": "memories", "limit": limits.batch_items},
        )


def update_many(
    conn: Connection,
    scope: Scope,
    patches: list[tuple[str, MemoryPatch]],
    limits: Limits,
    index: Indexer,
) -> list[MemoryRecord]:
    _bounded(len(patches), limits)
    return [memories.update(conn, scope, mid, patch, limits, index) for mid, patch in patches]


def delete_many(
    conn: Connection,
    scope: Scope,
    memory_ids: list[str],
    limits: Limits,
    index: Indexer,
    *,
    actor_id: str | None = None,
) -> list[MemoryRecord]:
    _bounded(len(memory_ids), limits)
    return [
        memories.set_state(conn, scope, mid, "deleted", index, actor_id=actor_id)
        for mid in memory_ids
    ]
