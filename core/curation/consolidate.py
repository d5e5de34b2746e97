"""Consolidation: find near-duplicate memories and merge each group into its best member.

Two active memories of the same user (and type) are near-duplicates when their content is
identical (same hash) or their vectors' cosine reaches the threshold, unless the
contradiction rule sees them disagree on a number, date or negation: "Alice has 2 cats" and
"Alice has 3 cats" are a conflict to resolve, not a duplicate to fold away. Facts keyed to
different subjects are never grouped either. Each call compares a bounded window of memories
(ordered by id, `max_scan` of them) with every memory in scope and hands back a cursor to the
next window; a dry run lists the groups, an apply merges each (core/curation/merge.py, `into_id` the
kept memory: highest importance, then the newest).
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Row

from core.curation.conflicts import VectorSpace, pairs_above
from core.curation.contradiction import compare
from core.curation.merge import MAX_SOURCES, merge
from core.curation.models import ConsolidateRecord, DuplicateGroupRecord, SuggestedGroupsRecord
from core.kernel import cursor as cursors
from core.kernel.config import Limits
from core.kernel.db.engine import sql, transaction
from core.kernel.db.id_lists import id_table
from core.kernel.scope import Scope
from core.memory.indexing import Indexer
from core.memory.policy import policy_for
from core.memory.store import COLUMNS, to_dict
from core.retrieval import vectors

_NEIGHBOURS = 20  # near-duplicate pairs kept per memory of the window, on average
_EXACT_GROUPS = 200


class _Groups:
    """Union-find over memory ids."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.reason: dict[frozenset[str], tuple[str, float]] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def join(self, a: str, b: str, reason: str, similarity: float) -> None:
        self.parent[self.find(a)] = self.find(b)
        self.reason[frozenset((a, b))] = (reason, similarity)

    def components(self) -> list[list[str]]:
        out: dict[str, list[str]] = {}
        for item in self.parent:
            out.setdefault(self.find(item), []).append(item)
        return [sorted(ids) for ids in out.values() if len(ids) > 1]


def _exact_pairs(conn: Connection, scope: Scope, user_id: str | None) -> list[tuple[str, str]]:
    params: dict[str, Any] = {"brain": scope.brain_id, "limit": _EXACT_GROUPS}
    where = "brain_id = :brain AND state = 'active'"
    user = scope.user_id or user_id
    if user is not None:
        where += " AND user_id = :user"
        params["user"] = user
    groups = conn.execute(
        sql(
            f"SELECT coalesce(user_id, '') AS owner, content_hash FROM memories WHERE {where} "
            "GROUP BY coalesce(user_id, ''), content_hash HAVING count(*) > 1 LIMIT :limit"
        ),
        params,
    ).all()
    pairs = []
    for owner, digest in groups:
        ids = conn.execute(
            sql(
                "SELECT id FROM memories WHERE brain_id = :brain AND state = 'active' "
                "AND coalesce(user_id, '') = :owner AND content_hash = :hash "
                f"ORDER BY id LIMIT {MAX_SOURCES}"
            ),
            {"brain": scope.brain_id, "owner": owner, "hash": digest},
        ).scalars()
        found = list(ids)
        pairs += [(found[0], other) for other in found[1:]]
    return pairs


def _similar_pairs(
    conn: Connection,
    scope: Scope,
    user_id: str | None,
    space: VectorSpace,
    threshold: float,
    max_scan: int,
    after: str,
) -> tuple[list[tuple[str, str, float]], str | None]:
    cache = vectors.cached(conn, scope.brain_id, space.model, space.dims)
    mask = cache.scope_mask(user_id=scope.user_id or user_id, states=("active",))
    slots = np.flatnonzero(mask)
    if len(slots) < 2:
        return [], None
    order = sorted(slots.tolist(), key=lambda slot: cache.ids[slot])
    ordered_ids = [cache.ids[slot] for slot in order]
    start = bisect.bisect_right(ordered_ids, after)
    window = order[start : start + max_scan]
    if not window:
        return [], None
    found = pairs_above(
        cache, np.array(window, np.int64), mask, threshold, limit=_NEIGHBOURS * len(window)
    )
    pairs = [(cache.ids[a], cache.ids[b], score) for a, b, score in found]
    last = start + len(window)
    return pairs, (ordered_ids[last - 1] if last < len(ordered_ids) else None)


def _mergeable(a: Row[Any], b: Row[Any]) -> bool:
    if a.type != b.type or a.user_id != b.user_id:
        return False
    if a.key is not None and b.key is not None and a.key.lower() != b.key.lower():
        return False
    # Any changed value or negation keeps them apart, events included ("lunch on Monday" and
    # "lunch on Friday" are two lunches, however alike their vectors).
    return a.content_hash == b.content_hash or compare(a.content, b.content, facts=True) is None


def _rows(conn: Connection, brain_id: str, ids: list[str]) -> dict[str, Row[Any]]:
    if not ids:
        return {}
    members, value = id_table(conn, "ids")
    join = "CROSS JOIN" if conn.dialect.name == "sqlite" else "JOIN"
    selected = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
    found = conn.execute(
        sql(
            f"SELECT {selected}, m.content_hash FROM {members} {join} memories m "
            "ON m.id = c.value WHERE m.brain_id = :brain AND m.state = 'active'"
        ),
        {"brain": brain_id, "ids": value(ids)},
    ).all()
    return {row.id: row for row in found}


def _keep(rows: list[Row[Any]]) -> Row[Any]:
    return max(rows, key=lambda row: (float(row.importance), row.updated_at, row.id))


def find_groups(
    conn: Connection,
    scope: Scope,
    *,
    user_id: str | None,
    threshold: float,
    space: VectorSpace | None,
    max_scan: int,
    cursor: str | None,
) -> tuple[list[DuplicateGroupRecord], str | None]:
    after = "" if cursor is None else str(cursors.decode(cursor, keys={"a": str})["a"])
    candidates: list[tuple[str, str, str, float]] = []
    if cursor is None:
        candidates += [(a, b, "same_content", 1.0) for a, b in _exact_pairs(conn, scope, user_id)]
    next_after = None
    if space is not None:
        similar, next_after = _similar_pairs(
            conn, scope, user_id, space, threshold, max_scan, after
        )
        candidates += [(a, b, "similar", s) for a, b, s in similar]
    rows = _rows(conn, scope.brain_id, list({i for a, b, _, _ in candidates for i in (a, b)}))
    groups = _Groups()
    for a, b, reason, similarity in candidates:
        first, second = rows.get(a), rows.get(b)
        if first is None or second is None or not _mergeable(first, second):
            continue
        if scope.user_id is not None and first.user_id != scope.user_id:
            continue
        if first.content_hash == second.content_hash:
            reason, similarity = "same_content", 1.0
        groups.join(a, b, reason, similarity)
    found: list[DuplicateGroupRecord] = []
    for ids in groups.components():
        members = sorted((rows[i] for i in ids), key=lambda r: (-float(r.importance), r.id))
        members = members[:MAX_SOURCES]
        kept = _keep(members)
        reasons = [
            groups.reason[pair]
            for pair in (frozenset((a.id, b.id)) for a in members for b in members if a.id < b.id)
            if pair in groups.reason
        ]
        found.append(
            {
                "ids": sorted(r.id for r in members),
                "keep_id": kept.id,
                "reason": "same_content"
                if all(r == "same_content" for r, _ in reasons)
                else "similar",
                "similarity": round(min(s for _, s in reasons), 4) if reasons else None,
                "memories": [to_dict(r) for r in members],
            }
        )
    found.sort(key=lambda group: group["ids"][0])
    return found, (None if next_after is None else cursors.encode({"a": next_after}))


def consolidate(
    conn: Connection,
    scope: Scope,
    *,
    user_id: str | None,
    threshold: float | None,
    dry_run: bool,
    space: VectorSpace | None,
    max_scan: int,
    cursor: str | None,
    limits: Limits,
    index: Indexer,
    actor_id: str | None = None,
) -> ConsolidateRecord:
    if not dry_run:
        scope.require_write()
    if threshold is None:  # the brain's own, as maintenance's suggestions use
        threshold = policy_for(conn, scope.brain_id).consolidate_threshold
    groups, next_cursor = find_groups(
        conn,
        scope,
        user_id=user_id,
        threshold=threshold,
        space=space,
        max_scan=max_scan,
        cursor=cursor,
    )
    if not dry_run:
        for group in groups:
            merged = merge(
                conn,
                scope,
                group["ids"],
                limits=limits,
                index=index,
                into_id=group["keep_id"],
                actor_id=actor_id,
            )
            group["merged"] = merged["memory"]
    return {"results": groups, "applied": not dry_run, "next_cursor": next_cursor}


def suggest(
    engine: Engine, brain_id: str, *, space: VectorSpace | None, threshold: float, max_scan: int
) -> SuggestedGroupsRecord:
    """For maintenance: how many near-duplicate groups the first window of a brain holds (a
    suggestion only; merging is a person's or an agent's call, through the API)."""
    scope = Scope(brain_id=brain_id, principal="system:maintenance")
    with transaction(engine, write=False) as conn:
        groups, _ = find_groups(
            conn,
            scope,
            user_id=None,
            threshold=threshold,
            space=space,
            max_scan=max_scan,
            cursor=None,
        )
    return {"groups": len(groups), "memories": sum(len(g["ids"]) for g in groups)}
