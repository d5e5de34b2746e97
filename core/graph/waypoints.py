"""Waypoints: OpenMemory's associative links, as inferred `related` links.

When MNEMO_INFERRED_LINKS is on, a new memory is linked to the memories of the same brain and
user most similar to it: at most the brain policy's `inferred_links_max`, each with a cosine of
at least `inferred_links_threshold`, weight = the cosine, origin `inferred`. It runs in the
memory's own transaction (the links and their changelog rows commit or roll back with it);
when the setting is off the create path runs no statement for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Connection

from core.graph.links import insert, member_of, record_created
from core.graph.models import NewLinkRecord
from core.kernel.db.engine import sql
from core.kernel.scope import Scope
from core.memory.indexing import CreatedHook
from core.memory.models import CreatedFields, MemoryRecord
from core.memory.policy import policy_for
from core.retrieval import vectors

# The vector cache proposes; SQL confirms (state, owner). Ask for a few spare candidates in case
# the cache is a little stale.
_SPARE = 4


def linker(model: str, dims: int) -> CreatedHook:
    """The hook an indexer runs on each new memory (core/app/remember.py): its links."""

    def link(
        conn: Connection, scope: Scope, memory: MemoryRecord, vector: np.ndarray | None
    ) -> CreatedFields:
        if vector is not None:
            link_similar(conn, scope, memory["id"], memory["user_id"], vector, model, dims)
        return {}

    return link


def link_similar(
    conn: Connection,
    scope: Scope,
    memory_id: str,
    user_id: str | None,
    vector: np.ndarray,
    model: str,
    dims: int,
) -> list[NewLinkRecord]:
    """Link a just-written memory to its most similar memories; returns the links made."""
    policy = policy_for(conn, scope.brain_id)
    if policy.inferred_links_max <= 0:
        return []
    cache = vectors.cached(conn, scope.brain_id, model, dims)
    # Same owner exactly: a brain-level memory (no user) links only to brain-level memories.
    mask = cache.scope_mask(user_id=None, states=("active",))
    mask &= cache.user_of == cache.user_code(user_id)
    slot = cache.slot(memory_id)
    if slot is not None:
        mask[slot] = False
    scores = cache.scores(vector)
    mask &= scores >= policy.inferred_links_threshold
    proposed = cache.top(scores, mask, policy.inferred_links_max + _SPARE)
    if not proposed:
        return []
    params: dict[str, Any] = {"brain": scope.brain_id}
    inside, bind = member_of(conn, "id", "ids")
    params["ids"] = bind([candidate for candidate, _ in proposed])
    owner = "user_id IS NULL"
    if user_id is not None:
        owner = "user_id = :user"
        params["user"] = user_id
    confirmed = {
        row[0]
        for row in conn.execute(
            sql(
                f"SELECT id FROM memories WHERE brain_id = :brain AND {inside} "
                f"AND state = 'active' AND {owner}"
            ),
            params,
        ).all()
    }
    made: list[NewLinkRecord] = [
        {
            "from_id": memory_id,
            "to_id": candidate,
            "relation": "related",
            "label": None,
            "weight": round(min(1.0, max(0.0, cosine)), 4),
            "origin": "inferred",
            "created_by": scope.principal,
        }
        for candidate, cosine in proposed
        if candidate in confirmed
    ]
    rows = made[: policy.inferred_links_max]
    if rows:
        insert(conn, scope.brain_id, rows)
        record_created(conn, scope, rows, user_id)
    return rows
