"""Contradictions caught when a memory is saved.

A new note or fact is compared (core/curation/contradiction.py, through the rules of
core/curation/conflicts.py) with the memories of the same user most likely to disagree with it,
a bounded number of each: its nearest by vector when this process holds the brain's vectors
already, else its nearest by words (the full-text index: two statements that disagree share most
of their words, which is what the detector asks of a pair), its user's 10 most recent ones, and
its same-key memories. The nearest by words are the write gate's own candidates when the gate
searched for them (an unkeyed write: core/memory/gate.py `shared_candidates`, read ahead of the
transaction on SQLite, inside it on PostgreSQL): one search serves both.
A disagreement is recorded as a conflict at once, in the memory's own transaction, and the
reply names it. Nothing here embeds (the indexer made the new memory's
vector before the transaction opened) and nothing loads a brain's vectors while the write holds
the store.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Connection

from core.curation import conflicts, contradiction
from core.kernel.scope import Scope
from core.memory import gate
from core.memory.models import CreatedFields, MemoryRecord
from core.retrieval import lexical, vectors

NEAREST = 8
RECENT = 10
# Words of the new memory the full-text lookup asks for: its longest, the most telling. Two
# statements the detector would flag share most of their words, so a few find the other.
_LOOKUP_WORDS = 8
_COMPARED = ("note", "fact")


def check_created(
    conn: Connection,
    scope: Scope,
    memory: MemoryRecord,
    vector: np.ndarray | None,
    *,
    space: conflicts.VectorSpace | None,
    foresight: dict[tuple[str, ...], Any] | None = None,
) -> CreatedFields:
    """Record the conflicts a just-created memory has with what the store holds; returns
    `{"conflicts": [...]}` when it found any. `foresight` is the indexer's record of what the
    gate searched for (its candidates stand in for the search by words)."""
    if memory["type"] not in _COMPARED or memory["state"] != "active":
        return {}
    if memory["key"] is None and not contradiction.says_enough(memory["content"]):
        # Too little said to disagree with anything (the detector's own first test), and no
        # key to share: nothing to read.
        return {}
    nearest = None
    if vector is not None and space is not None:
        nearest = _nearest(conn, scope.brain_id, memory, vector, space)
    # The vector cache answers from memory; the full-text lookup (a few ms) stands in for it
    # when this process has not loaded the brain's vectors (or there is no embedder), and the
    # gate's own search, when it made one for this write, stands in for that.
    if nearest is None:
        shared = gate.shared_candidates(foresight, scope.brain_id, memory) if foresight else None
        if shared is not None:
            nearest = [c.id for c in shared if c.id != memory["id"]]
        else:
            nearest = _by_words(conn, scope.brain_id, memory)
    # The user's RECENT latest are read with the rows compared, in the same statement.
    found = conflicts.find_against(
        conn, scope, memory["id"], nearest, latest=(memory["user_id"], RECENT)
    )
    created = conflicts.record_all(conn, scope, found)
    if not created:
        return {}
    return {
        "conflicts": [
            {
                "id": c["id"],
                "with_id": c["b_id"] if c["a_id"] == memory["id"] else c["a_id"],
                "kind": c["kind"],
                "reason": c["reason"],
            }
            for c in created
        ]
    }


def _by_words(conn: Connection, brain_id: str, memory: MemoryRecord) -> list[str]:
    params: dict[str, Any] = {"brain": brain_id, "id": memory["id"]}
    where = ["m.brain_id = :brain", "m.state = 'active'", "m.id <> :id"]
    if memory["user_id"] is not None:
        where.append("m.user_id = :user")
        params["user"] = memory["user_id"]
    else:
        where.append("m.user_id IS NULL")
    rows = lexical.candidates(
        conn,
        sorted(lexical.query_terms(memory["content"]), key=len, reverse=True)[:_LOOKUP_WORDS],
        where,
        params,
        NEAREST,
        brain_id=brain_id,
        user_id=memory["user_id"],
    )
    return [row[1] for row in rows]


def _nearest(
    conn: Connection,
    brain_id: str,
    memory: MemoryRecord,
    vector: np.ndarray,
    space: conflicts.VectorSpace,
) -> list[str] | None:
    """The nearest by vector, or None when the brain's vectors are not loaded here."""
    cache = vectors.warm(conn, brain_id, space.model, space.dims)
    if cache is None:
        return None
    if cache.count == 0:
        return []
    # Same owner exactly (a brain-level memory has no user), active, not itself.
    mask = cache.scope_mask(user_id=None, states=("active",))
    mask &= cache.user_of == cache.user_code(memory["user_id"])
    slot = cache.slot(memory["id"])
    if slot is not None:
        mask[slot] = False
    scores = cache.scores(np.asarray(vector, dtype=np.float32))
    return [memory_id for memory_id, _ in cache.top(scores, mask, space.neighbours)]
