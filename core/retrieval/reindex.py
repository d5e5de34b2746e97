"""Re-embedding a brain when the embedding model changes. Memories are read, embedded and
written in batches, each in its own short transaction, so a remote model is never called while
a write lock is held, and a long reindex can stop and resume anywhere."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from core.kernel.errors import Forbidden
from core.kernel.scope import Scope
from core.memory.indexing import document_text
from core.retrieval import vectors


def pending(conn: Connection, scope: Scope, model: str, limit: int) -> list[tuple[str, str]]:
    """(memory id, text to embed) of memories with no vector of `model` yet."""
    rows = conn.execute(
        text(
            "SELECT m.id, m.title, m.key, m.tags, m.content FROM memories m "
            "LEFT JOIN memory_vectors v ON v.memory_id = m.id AND v.model = :model "
            "WHERE m.brain_id = :brain AND v.memory_id IS NULL ORDER BY m.id LIMIT :limit"
        ),
        {"brain": scope.brain_id, "model": model, "limit": limit},
    ).all()
    return [(r.id, document_text(r.title, r.key, r.tags, r.content)) for r in rows]


def remaining(conn: Connection, scope: Scope, model: str) -> int:
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM memories m LEFT JOIN memory_vectors v "
                "ON v.memory_id = m.id AND v.model = :model "
                "WHERE m.brain_id = :brain AND v.memory_id IS NULL"
            ),
            {"brain": scope.brain_id, "model": model},
        ).scalar_one()
    )


def store(conn: Connection, scope: Scope, model: str, embedded: list[tuple[str, Any]]) -> int:
    """Store the vectors of the memories that still exist (one may be purged meanwhile)."""
    scope.require_write()
    if scope.user_id is not None:
        raise Forbidden("reindexing is for brain-wide keys", code="brain_key_required")
    stored = 0
    for memory_id, vector in embedded:
        exists = conn.execute(
            text("SELECT 1 FROM memories WHERE brain_id = :brain AND id = :id"),
            {"brain": scope.brain_id, "id": memory_id},
        ).first()
        if exists:
            vectors.store(conn, scope.brain_id, memory_id, model, vector)
            stored += 1
    return stored
