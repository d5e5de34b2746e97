"""Link suggestions: the memories worth linking to one memory, each with a score and its reasons.

Candidates come from three bounded lookups (the most similar vectors, the memories sharing a
tag, the memories saved just before and after by the same user), are read back from SQL under
the scope (active, same owner, not already linked either way), and are scored on [0, 1] by a
weighted sum of four signals: text similarity (the cosine placed between the embedder's
unrelated level and 1), shared tags (Jaccard), the same source, and time closeness
(halving every day apart).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from sqlalchemy import Connection

from core.graph.links import member_of, visible_memory
from core.graph.models import SuggestionPageRecord, SuggestionRecord
from core.kernel.db.engine import sql
from core.kernel.scope import Scope
from core.memory.store import COLUMNS, to_dict
from core.retrieval import vectors
from core.retrieval.search import QueryVector

WEIGHTS = {"similarity": 0.5, "tags": 0.25, "source": 0.1, "time": 0.15}
_SIMILAR = 50  # nearest vectors considered
_TAG_ROWS = 2000  # tag postings read
_TAGGED = 50  # memories sharing the most tags considered
_ADJACENT = 10  # memories saved just before, and just after
_LINKED_ROWS = 5000
_HOUR_MS = 3_600_000


def _owner(alias: str, user_id: str | None, params: dict[str, Any]) -> str:
    if user_id is None:
        return f"{alias}user_id IS NULL"
    params["owner"] = user_id
    return f"{alias}user_id = :owner"


def _linked(conn: Connection, brain_id: str, memory_id: str) -> set[str]:
    rows = conn.execute(
        sql(
            "SELECT to_id FROM memory_links WHERE brain_id = :brain AND from_id = :id "
            "UNION SELECT from_id FROM memory_links WHERE brain_id = :brain AND to_id = :id "
            "LIMIT :limit"
        ),
        {"brain": brain_id, "id": memory_id, "limit": _LINKED_ROWS},
    ).all()
    return {row[0] for row in rows}


def _similar(
    conn: Connection, brain_id: str, memory_id: str, user_id: str | None, vector: QueryVector
) -> dict[str, float]:
    cache = vectors.cached(conn, brain_id, vector.model, vector.dims)
    slot = cache.slot(memory_id)
    if slot is None:
        return {}
    scores = cache.products(np.array([slot]))[0]
    mask = cache.scope_mask(user_id=None, states=("active",))
    mask &= cache.user_of == cache.user_code(user_id)
    mask[slot] = False
    return dict(cache.top(scores, mask, _SIMILAR))


def _tagged(conn: Connection, brain_id: str, memory_id: str, tags: list[str]) -> set[str]:
    if not tags:
        return set()
    params: dict[str, Any] = {"brain": brain_id, "id": memory_id, "limit": _TAG_ROWS}
    names = [f"t_{i}" for i in range(len(tags))]
    params.update(zip(names, tags, strict=True))
    rows = conn.execute(
        sql(
            "SELECT memory_id FROM memory_tags WHERE brain_id = :brain AND tag IN "
            f"({', '.join(':' + n for n in names)}) AND memory_id <> :id LIMIT :limit"
        ),
        params,
    ).all()
    counts: dict[str, int] = {}
    for (other,) in rows:
        counts[other] = counts.get(other, 0) + 1
    return set(sorted(counts, key=lambda i: (-counts[i], i))[:_TAGGED])


def _adjacent(conn: Connection, brain_id: str, centre: Any) -> set[str]:
    found: set[str] = set()
    for op, order in (("<", "DESC"), (">", "ASC")):
        params: dict[str, Any] = {
            "brain": brain_id,
            "t": centre.created_at,
            "id": centre.id,
            "limit": _ADJACENT,
        }
        owner = _owner("", centre.user_id, params)
        rows = conn.execute(
            sql(
                f"SELECT id FROM memories WHERE brain_id = :brain AND {owner} "
                f"AND (created_at, id) {op} (:t, :id) AND state = 'active' "
                f"ORDER BY created_at {order}, id {order} LIMIT :limit"
            ),
            params,
        ).all()
        found.update(row[0] for row in rows)
    return found


def _apart(hours: float) -> str:
    amount, unit = (max(1, round(hours * 60)), "minute") if hours < 1 else (round(hours), "hour")
    if hours >= 48:
        amount, unit = round(hours / 24), "day"
    return f"{amount} {unit}{'' if amount == 1 else 's'}"


def suggest(
    conn: Connection,
    scope: Scope,
    memory_id: str,
    vector: QueryVector | None,
    *,
    limit: int = 10,
    min_score: float = 0.05,
) -> SuggestionPageRecord:
    """`vector` names the embedding model (no query is embedded: the memory's own stored
    vector is compared); None leaves text similarity out."""
    centre = visible_memory(conn, scope, memory_id)
    tags = json.loads(centre.tags)
    similar = (
        {} if vector is None else _similar(conn, scope.brain_id, centre.id, centre.user_id, vector)
    )
    candidates = set(similar) | _tagged(conn, scope.brain_id, centre.id, tags)
    candidates |= _adjacent(conn, scope.brain_id, centre)
    candidates -= _linked(conn, scope.brain_id, centre.id) | {centre.id}
    if not candidates:
        return {"results": []}
    params: dict[str, Any] = {"brain": scope.brain_id}
    inside, bind = member_of(conn, "id", "ids")
    params["ids"] = bind(sorted(candidates))
    owner = _owner("", centre.user_id, params)
    rows = conn.execute(
        sql(
            f"SELECT {COLUMNS} FROM memories WHERE brain_id = :brain AND {inside} "
            f"AND state = 'active' AND {owner}"
        ),
        params,
    ).all()
    # Two memories' cosine runs higher than a short query's against a memory, so the strong-match
    # level calibrated for queries would call most pairs identical: scale from the unrelated
    # level to 1 instead.
    floor = 0.0 if vector is None else min(vector.noise, 0.9)
    mine = set(tags)
    scored: list[SuggestionRecord] = []
    for row in rows:
        cosine = similar.get(row.id)
        closeness = 0.0
        if cosine is not None:
            closeness = float(np.clip((cosine - floor) / (1.0 - floor), 0.0, 1.0))
        theirs = set(json.loads(row.tags))
        shared = sorted(mine & theirs)
        jaccard = len(shared) / len(mine | theirs) if shared else 0.0
        same_source = centre.source is not None and row.source == centre.source
        hours = abs(row.created_at - centre.created_at) / _HOUR_MS
        recency = math.pow(0.5, hours / 24)
        score = (
            WEIGHTS["similarity"] * closeness
            + WEIGHTS["tags"] * jaccard
            + WEIGHTS["source"] * same_source
            + WEIGHTS["time"] * recency
        )
        if score < min_score:
            continue
        reasons = []
        if closeness > 0 and cosine is not None:
            reasons.append(f"similar content (cosine {cosine:.2f})")
        if shared:
            reasons.append(f"shares tags: {', '.join(shared)}")
        if same_source:
            reasons.append(f"same source: {centre.source}")
        if recency >= 0.1:
            reasons.append(f"saved {_apart(hours)} apart")
        scored.append(
            {
                "memory": to_dict(row),
                "score": round(score, 4),
                "relation": "related",
                "reasons": reasons,
                "signals": {
                    "similarity": None if cosine is None else round(cosine, 4),
                    "shared_tags": shared,
                    "same_source": same_source,
                    "hours_apart": round(hours, 2),
                },
            }
        )
    scored.sort(key=lambda s: (-s["score"], s["memory"]["id"]))
    return {"results": scored[:limit]}
