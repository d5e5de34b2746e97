"""Conflicts between memories: found, listed, resolved or dismissed.

Three rules find them, each within one brain and one user scope (a brain-wide memory and a
user's memory are different scopes; two users may well each have a "home city"):
- `key`: two active memories, at least one a fact, with the same key (ignoring case and
  spacing) and different content;
- `link`: a `contradicts` link joins two memories;
- `value`: two facts or notes whose words are nearly the same but state a different number,
  date or time, or one negates the other (core/curation/contradiction.py). Candidates are each
  memory's most similar memories from the vector cache, so a pass costs a bounded number of
  compares.

A pair is one row (its key is the two ids sorted), whatever rule finds it again. Resolving
picks the canonical memory: the loser gets `superseded_by` set to it (search halves superseded
memories, summaries and context packs leave them out) and is archived or, with mode `demote`,
left active; a `supersedes` link joins them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sqlalchemy import Connection, Engine, Row

from core.curation.contradiction import compare
from core.curation.models import ConflictDetail, ConflictPageRecord, ConflictRecord, DetectRecord
from core.events import changelog, history
from core.kernel import cursor as cursors
from core.kernel.db.engine import settled_before, sql, transaction
from core.kernel.db.id_lists import id_table
from core.kernel.errors import Conflict, InvalidInput, NotFound
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope
from core.memory import lifecycle, validtime
from core.memory.indexing import Indexer
from core.memory.models import MemoryRecord
from core.memory.store import COLUMNS, to_dict
from core.retrieval import vectors

Status = Literal["needs_review", "resolved", "superseded", "dismissed"]
Mode = Literal["archive", "demote"]

_CONFLICT_COLUMNS = (
    "id, pair_key, a_id, b_id, user_id, kind, reason, detail, status, canonical_id, mode, note, "
    "created_at, updated_at, resolved_at"
)
_MEMORY_COLUMNS = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
_COMPARED_TYPES = ("fact", "note")
# Most `contradicts` links one on-demand detection reads.
_DETECT_LINK_ROWS = 1000


@dataclass(frozen=True)
class VectorSpace:
    """Which vectors to find neighbours in: the embedder's model and dimensions."""

    model: str
    dims: int
    neighbours: int = 8


def pair_key(a: str, b: str) -> str:
    first, second = sorted((a, b))
    return f"{first}|{second}"


def _norm_key(key: str | None) -> str | None:
    return None if key is None else " ".join(key.split()).lower()


def _to_dict(row: Any) -> ConflictRecord:
    """The conflict's row; its two memories are set by `_with_memories`."""
    return {
        "id": row.id,
        "pair_key": row.pair_key,
        "a_id": row.a_id,
        "b_id": row.b_id,
        "user_id": row.user_id,
        "kind": row.kind,
        "reason": row.reason,
        "detail": json.loads(row.detail),
        "status": row.status,
        "canonical_id": row.canonical_id,
        "mode": row.mode,
        "note": row.note,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "resolved_at": iso(row.resolved_at),
        "a": None,
        "b": None,
    }


# Recording ------------------------------------------------------------------------------------


def record(
    conn: Connection,
    scope: Scope,
    a: Any,
    b: Any,
    *,
    kind: str,
    reason: str,
    detail: dict[str, Any] | None = None,
    at: int | None = None,
) -> ConflictRecord | None:
    """The new conflict between memories `a` and `b` (rows with id and user_id), or None when
    the pair already has one (whatever its status: a dismissed pair stays dismissed)."""
    now = now_ms() if at is None else at
    first, second = sorted((a, b), key=lambda row: str(row.id))
    conflict_id = new_id()
    inserted = conn.execute(
        sql(
            # Only while both memories exist: detection compares in one transaction and
            # records in another, and a memory may be purged in between.
            "INSERT INTO memory_conflict_resolutions (id, brain_id, pair_key, a_id, b_id, "
            "user_id, kind, reason, detail, status, created_at, updated_at) SELECT :id, :brain, "
            ":pair, :a, :b, :user, :kind, :reason, :detail, 'needs_review', :now, :now "
            "WHERE (SELECT count(*) FROM memories WHERE brain_id = :brain AND id IN (:a, :b)) = 2 "
            "ON CONFLICT (brain_id, pair_key) DO NOTHING"
        ),
        {
            "id": conflict_id,
            "brain": scope.brain_id,
            "pair": pair_key(first.id, second.id),
            "a": first.id,
            "b": second.id,
            "user": first.user_id,
            "kind": kind,
            "reason": reason,
            "detail": json.dumps(detail or {}),
            "now": now,
        },
    ).rowcount
    if not inserted:
        return None
    changelog.record(
        conn,
        scope,
        event_type="conflict.detected",
        entity_type="conflict",
        entity_id=conflict_id,
        summary=f"Conflict ({kind}, {reason}) between {first.id} and {second.id}",
        user_id=first.user_id,
        payload={"a_id": first.id, "b_id": second.id, "kind": kind, "reason": reason},
        at=now,
    )
    return get(conn, scope, conflict_id)


def on_contradicts_link(conn: Connection, scope: Scope, from_id: str, to_id: str) -> None:
    """A `contradicts` link is a conflict to review, recorded with it (core/app/linking.py)."""
    rows = _memories(conn, scope.brain_id, [from_id, to_id])
    if len(rows) == 2 and from_id != to_id:
        record(conn, scope, rows[from_id], rows[to_id], kind="link", reason="contradicts_link")


# What the rules read of a memory (and record() of a pair): the write-time check reads no more.
_RULE_COLUMNS = "m.id, m.user_id, m.type, m.key, m.content, m.state, m.superseded_by"


def _memories(
    conn: Connection, brain_id: str, ids: Iterable[str], columns: str = _MEMORY_COLUMNS
) -> dict[str, Row[Any]]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    members, value = id_table(conn, "ids")
    join = "CROSS JOIN" if conn.dialect.name == "sqlite" else "JOIN"
    rows = conn.execute(
        sql(
            f"SELECT {columns} FROM {members} {join} memories m ON m.id = c.value "
            "WHERE m.brain_id = :brain"
        ),
        {"brain": brain_id, "ids": value(wanted)},
    ).all()
    return {row.id: row for row in rows}


def _memories_and_latest(
    conn: Connection, brain_id: str, memory_id: str, ids: list[str], owner: str | None, n: int
) -> dict[str, Row[Any]]:
    """The rule columns of `memory_id`, of `ids` and of the owner's `n` latest active notes and
    facts (itself left out), the latest first, newest first, then `ids` in their order: one
    statement where there were two (a round trip of every checked write)."""
    members, value = id_table(conn, "ids")
    join = "CROSS JOIN" if conn.dialect.name == "sqlite" else "JOIN"
    mine = "m.user_id = :owner" if owner is not None else "m.user_id IS NULL"
    rows = conn.execute(
        sql(
            f"SELECT {_RULE_COLUMNS}, m.created_at, 0 AS latest FROM {members} {join} memories m "
            "ON m.id = c.value WHERE m.brain_id = :brain UNION ALL "
            f"SELECT * FROM (SELECT {_RULE_COLUMNS}, m.created_at, 1 AS latest FROM memories m "
            f"WHERE m.brain_id = :brain AND {mine} AND m.state = 'active' "
            "AND m.type IN ('note', 'fact') AND m.id <> :id "
            "ORDER BY m.created_at DESC, m.id DESC LIMIT :n) l"
        ),
        {
            "brain": brain_id,
            "ids": value(list(dict.fromkeys([memory_id, *ids]))),
            "owner": owner,
            "id": memory_id,
            "n": n,
        },
    ).all()
    newest = sorted((r for r in rows if r.latest), key=lambda r: (r.created_at, r.id), reverse=True)
    listed = {r.id: r for r in rows if not r.latest}
    order = [memory_id, *(r.id for r in newest), *ids]
    found = {r.id: r for r in newest} | listed
    return {i: found[i] for i in dict.fromkeys(order) if i in found}


# Detection ------------------------------------------------------------------------------------


def _comparable(row: Any) -> bool:
    return bool(row.state == "active" and row.superseded_by is None)


def _same_scope(a: Any, b: Any) -> bool:
    return bool(a.user_id == b.user_id)


def _key_rule(a: Any, b: Any) -> tuple[str, ConflictDetail] | None:
    key = _norm_key(a.key)
    if key is None or key != _norm_key(b.key) or "fact" not in (a.type, b.type):
        return None
    if a.content.strip() == b.content.strip():
        return None
    return "same_key_different_content", {"key": a.key}


def _value_rule(a: Any, b: Any) -> tuple[str, ConflictDetail] | None:
    if a.type not in _COMPARED_TYPES or b.type not in _COMPARED_TYPES:
        return None
    if a.key is not None and b.key is not None and _norm_key(a.key) != _norm_key(b.key):
        return None  # keyed to different subjects
    finding = compare(a.content, b.content, facts="fact" in (a.type, b.type))
    return None if finding is None else (finding.reason, finding.detail)


def _key_partners(conn: Connection, brain_id: str, rows: list[Any]) -> list[Any]:
    keyed = {(r.user_id, _norm_key(r.key)) for r in rows if r.key is not None}
    found: list[Any] = []
    for user_id, key in keyed:
        same_user = "user_id = :user" if user_id is not None else "user_id IS NULL"
        found.extend(
            conn.execute(
                sql(
                    f"SELECT {COLUMNS} FROM memories WHERE brain_id = :brain "
                    f"AND lower(key) = :key AND key IS NOT NULL AND {same_user} "
                    "AND state = 'active' LIMIT 50"
                ),
                {"brain": brain_id, "key": key, "user": user_id},
            ).all()
        )
    return found


_CHUNK = 128  # query rows per matrix product: 128 x 50,000 cosines is 25 MB


def nearest_same_user(
    cache: vectors.Snapshot, slots: np.ndarray, eligible: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each cache slot in `slots`: the slots of its `k` most similar eligible memories of
    the same user (itself excluded) and their cosines (-inf where there are fewer)."""
    count = cache.count
    k = min(k, count - 1)
    best_slots = np.zeros((len(slots), max(k, 0)), np.int64)
    best_scores = np.full((len(slots), max(k, 0)), -np.inf, np.float32)
    if k <= 0:
        return best_slots, best_scores
    users = cache.user_of
    for start in range(0, len(slots), _CHUNK):
        part = slots[start : start + _CHUNK]
        allowed = eligible[None, :] & (users[None, :] == users[part][:, None])
        allowed[np.arange(len(part)), part] = False
        sims = np.where(allowed, cache.products(part), -np.inf)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        best_slots[start : start + len(part)] = top
        best_scores[start : start + len(part)] = np.take_along_axis(sims, top, axis=1)
    return best_slots, best_scores


def pairs_above(
    cache: vectors.Snapshot,
    slots: np.ndarray,
    eligible: np.ndarray,
    threshold: float,
    *,
    limit: int,
) -> list[tuple[int, int, float]]:
    """(slot, other slot, cosine) for every eligible memory of the same user whose cosine with
    one of `slots` reaches `threshold` (itself excluded), at most `limit` of them."""
    users = cache.user_of
    found: list[tuple[int, int, float]] = []
    for start in range(0, len(slots), _CHUNK):
        part = slots[start : start + _CHUNK]
        sims = cache.products(part)
        hit = sims >= threshold
        hit &= eligible[None, :] & (users[None, :] == users[part][:, None])
        hit[np.arange(len(part)), part] = False
        rows, cols = np.nonzero(hit)
        found += [
            (int(part[r]), int(c), float(sims[r, c]))
            for r, c in zip(rows[: limit - len(found)], cols[: limit - len(found)], strict=True)
        ]
        if len(found) >= limit:
            break
    return found


def _neighbour_ids(
    conn: Connection, brain_id: str, rows: list[Any], space: VectorSpace
) -> dict[str, list[str]]:
    """memory id -> the ids of its most similar active memories of the same user."""
    cache = vectors.cached(conn, brain_id, space.model, space.dims)
    found = [(r, slot) for r in rows if (slot := cache.slot(r.id)) is not None]
    if not found:
        return {}
    present = [r for r, _ in found]
    slots = np.array([slot for _, slot in found], np.int64)
    top, scores = nearest_same_user(cache, slots, cache.state_of == 0, space.neighbours)
    return {
        row.id: [cache.ids[j] for j, s in zip(top[i], scores[i], strict=True) if np.isfinite(s)]
        for i, row in enumerate(present)
    }


@dataclass(frozen=True)
class Found:
    """A conflict found, not yet recorded."""

    a: Any
    b: Any
    kind: str
    reason: str
    detail: ConflictDetail


def find(conn: Connection, scope: Scope, rows: list[Any], space: VectorSpace | None) -> list[Found]:
    """Compare each of `rows` (memories read with COLUMNS) with its same-key memories and its
    nearest neighbours. Reads only."""
    rows = [r for r in rows if _comparable(r)]
    if not rows:
        return []
    partners: dict[str, Any] = {r.id: r for r in _key_partners(conn, scope.brain_id, rows)}
    neighbours = _neighbour_ids(conn, scope.brain_id, rows, space) if space else {}
    wanted = {i for ids in neighbours.values() for i in ids} - partners.keys()
    partners.update(_memories(conn, scope.brain_id, wanted))
    by_key: dict[tuple[str | None, str | None], list[Any]] = {}
    for partner in partners.values():
        by_key.setdefault((partner.user_id, _norm_key(partner.key)), []).append(partner)
    found: list[Found] = []
    seen: set[str] = set()
    for row in rows:
        candidates = list(by_key.get((row.user_id, _norm_key(row.key)), [])) if row.key else []
        candidates += [partners[i] for i in neighbours.get(row.id, []) if i in partners]
        found += _compare(row, candidates, seen)
    return found


def _compare(row: Any, candidates: list[Any], seen: set[str]) -> list[Found]:
    found: list[Found] = []
    for other in candidates:
        pair = pair_key(row.id, other.id)
        if other.id == row.id or pair in seen:
            continue
        seen.add(pair)
        if not (_comparable(other) and _same_scope(row, other)):
            continue
        kind, rule = "key", _key_rule(row, other)
        if rule is None:
            kind, rule = "value", _value_rule(row, other)
        if rule is not None:
            found.append(Found(row, other, kind, rule[0], rule[1]))
    return found


def find_against(
    conn: Connection,
    scope: Scope,
    memory_id: str,
    ids: list[str],
    *,
    latest: tuple[str | None, int] | None = None,
) -> list[Found]:
    """Compare one memory with the memories `ids` and with its same-key memories (a bounded
    read: the caller chose the ids). `latest` (an owner, n): also with that owner's n latest
    active notes and facts, first, read in the same statement as the rest. Reads only."""
    if latest is None:
        rows = _memories(conn, scope.brain_id, [memory_id, *ids], _RULE_COLUMNS)
    else:
        rows = _memories_and_latest(conn, scope.brain_id, memory_id, ids, *latest)
    row = rows.pop(memory_id, None)
    if row is None or not _comparable(row):
        return []
    partners = _key_partners(conn, scope.brain_id, [row]) if row.key else []
    return _compare(row, partners + list(rows.values()), set())


def _find_contradicts_links(
    conn: Connection, scope: Scope, links: list[tuple[str, str]]
) -> list[Found]:
    rows = _memories(conn, scope.brain_id, [i for pair in links for i in pair])
    found = []
    for from_id, to_id in links:
        a, b = rows.get(from_id), rows.get(to_id)
        if a is None or b is None or a.id == b.id or "deleted" in (a.state, b.state):
            continue
        found.append(Found(a, b, "link", "contradicts_link", {}))
    return found


def record_all(conn: Connection, scope: Scope, found: list[Found]) -> list[ConflictRecord]:
    """Record what was found; returns the conflicts that are new."""
    now = now_ms()
    created = []
    for item in found:
        new = record(
            conn,
            scope,
            item.a,
            item.b,
            kind=item.kind,
            reason=item.reason,
            detail=item.detail,
            at=now,
        )
        if new is not None:
            created.append(new)
    return created


def check(
    conn: Connection, scope: Scope, rows: list[Any], space: VectorSpace | None
) -> list[ConflictRecord]:
    """`find` and record in one go; returns the new conflicts."""
    return record_all(conn, scope, find(conn, scope, rows, space))


def mark_superseded(conn: Connection, brain_id: str, memory_ids: list[str], at: int) -> int:
    """Open conflicts of memories that were archived, merged or superseded are moot."""
    if not memory_ids:
        return 0
    members, value = id_table(conn, "ids")
    return int(
        conn.execute(
            sql(
                "UPDATE memory_conflict_resolutions SET status = 'superseded', updated_at = :now "
                "WHERE brain_id = :brain AND status = 'needs_review' AND (a_id IN "
                f"(SELECT value FROM {members}) OR b_id IN (SELECT value FROM {members}))"
            ),
            {"brain": brain_id, "now": at, "ids": value(memory_ids)},
        ).rowcount
    )


def _sweep(conn: Connection, brain_id: str, limit: int) -> int:
    """Open conflicts whose memories are no longer both active and current become superseded."""
    stale = [
        row.id
        for row in conn.execute(
            sql(
                "SELECT c.id FROM memory_conflict_resolutions c "
                "JOIN memories a ON a.id = c.a_id JOIN memories b ON b.id = c.b_id "
                "WHERE c.brain_id = :brain AND c.status = 'needs_review' AND ("
                "a.state <> 'active' OR b.state <> 'active' OR a.superseded_by IS NOT NULL "
                "OR b.superseded_by IS NOT NULL) LIMIT :limit"
            ),
            {"brain": brain_id, "limit": limit},
        ).all()
    ]
    if not stale:
        return 0
    members, value = id_table(conn, "ids")
    conn.execute(
        sql(
            "UPDATE memory_conflict_resolutions SET status = 'superseded', updated_at = :now "
            f"WHERE brain_id = :brain AND id IN (SELECT value FROM {members})"
        ),
        {"brain": brain_id, "now": now_ms(), "ids": value(stale)},
    )
    return len(stale)


def _advance(
    conn: Connection, brain_id: str, memory: tuple[int, str], link: tuple[int, str]
) -> None:
    """Move the watermarks forward (never back: a slower pass may finish after a faster one)."""
    suffix = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
    current = conn.execute(
        sql(
            "SELECT memory_at, memory_id, link_at, link_id FROM conflict_scans "
            f"WHERE brain_id = :brain{suffix}"
        ),
        {"brain": brain_id},
    ).first()
    if current is not None:
        memory = max(memory, (current.memory_at, current.memory_id))
        link = max(link, (current.link_at, current.link_id))
    conn.execute(
        sql(
            "INSERT INTO conflict_scans (brain_id, memory_at, memory_id, link_at, link_id, "
            "updated_at) VALUES (:brain, :mat, :mid, :lat, :lid, :now) "
            "ON CONFLICT (brain_id) DO UPDATE SET "
            "memory_at = excluded.memory_at, memory_id = excluded.memory_id, "
            "link_at = excluded.link_at, link_id = excluded.link_id, "
            "updated_at = excluded.updated_at"
        ),
        {
            "brain": brain_id,
            "mat": memory[0],
            "mid": memory[1],
            "lat": link[0],
            "lid": link[1],
            "now": now_ms(),
        },
    )


_NEVER = 2**62  # a horizon past any time stamp


def detect(
    engine: Engine, brain_id: str, *, batch_size: int, space: VectorSpace | None
) -> dict[str, int]:
    """One bounded pass for maintenance: the next `batch_size` memories changed since the last
    pass, the next `batch_size` contradicts links, and as many stale open conflicts. The
    comparing is done in a read transaction, so writers wait only for the recording. Two passes
    at once are safe: a pair is recorded once, and the watermarks only move forward."""
    scope = Scope(brain_id=brain_id, principal="system:maintenance")
    with transaction(engine, write=False) as conn:
        mark = conn.execute(
            sql(
                "SELECT memory_at, memory_id, link_at, link_id FROM conflict_scans "
                "WHERE brain_id = :brain"
            ),
            {"brain": brain_id},
        ).first()
        memory_at, memory_id, link_at, link_id = mark if mark is not None else (0, "", 0, "")
        settled = settled_before(conn)
        horizon = _NEVER if settled is None else settled
        rows = conn.execute(
            sql(
                f"SELECT {COLUMNS} FROM memories WHERE brain_id = :brain AND (updated_at > :at "
                "OR (updated_at = :at AND id > :id)) AND updated_at < :horizon "
                "ORDER BY updated_at, id LIMIT :limit"
            ),
            {"brain": brain_id, "at": memory_at, "id": memory_id, "limit": batch_size,
             "horizon": horizon},
        ).all()  # fmt: skip
        links = conn.execute(
            sql(
                "SELECT id, from_id, to_id, created_at FROM memory_links WHERE brain_id = :brain "
                "AND relation = 'contradicts' AND (created_at > :at OR (created_at = :at AND "
                "id > :id)) AND created_at < :horizon ORDER BY created_at, id LIMIT :limit"
            ),
            {"brain": brain_id, "at": link_at, "id": link_id, "limit": batch_size,
             "horizon": horizon},
        ).all()  # fmt: skip
        found = find(conn, scope, list(rows), space)
        found += _find_contradicts_links(conn, scope, [(r.from_id, r.to_id) for r in links])
    if rows:
        memory_at, memory_id = rows[-1].updated_at, rows[-1].id
    if links:
        link_at, link_id = links[-1].created_at, links[-1].id
    with transaction(engine, write=True) as conn:
        created = record_all(conn, scope, found)
        superseded = _sweep(conn, brain_id, batch_size)
        _advance(conn, brain_id, (memory_at, memory_id), (link_at, link_id))
    return {
        "memories_scanned": len(rows),
        "links_scanned": len(links),
        "created": len(created),
        "superseded": superseded,
        "done": int(len(rows) < batch_size and len(links) < batch_size),
    }


def detect_now(
    conn: Connection,
    scope: Scope,
    *,
    memory_id: str | None,
    user_id: str | None,
    limit: int,
    space: VectorSpace | None,
) -> DetectRecord:
    """On demand: one memory against its neighbours, or the `limit` most recently changed
    memories in scope. Returns the conflicts it recorded."""
    scope.require_write()
    params: dict[str, Any] = {"limit": limit}
    where = [scope.where(params)]
    if memory_id is not None:
        where.append("id = :id")
        params["id"] = memory_id
    elif user_id is not None:
        where.append("user_id = :user")
        params["user"] = user_id
    rows = conn.execute(
        sql(
            f"SELECT {COLUMNS} FROM memories WHERE {' AND '.join(where)} AND state = 'active' "
            "ORDER BY updated_at DESC, id DESC LIMIT :limit"
        ),
        params,
    ).all()
    if memory_id is not None and not rows:
        _memory_in_scope(conn, scope, memory_id)
    created = check(conn, scope, list(rows), space)
    ids = [r.id for r in rows]
    if ids:
        members, value = id_table(conn, "ids")
        links = conn.execute(
            sql(
                "SELECT from_id, to_id FROM memory_links WHERE brain_id = :brain "
                f"AND relation = 'contradicts' AND (from_id IN (SELECT value FROM {members}) "
                f"OR to_id IN (SELECT value FROM {members})) LIMIT :limit"
            ),
            # Most are recorded as they are made (on_contradicts_link): this catches the rest.
            {"brain": scope.brain_id, "ids": value(ids), "limit": _DETECT_LINK_ROWS},
        ).all()
        linked = _find_contradicts_links(conn, scope, [(r.from_id, r.to_id) for r in links])
        created += record_all(conn, scope, linked)
    return {"results": created, "scanned": len(rows)}


# Reading --------------------------------------------------------------------------------------


def open_pairs(
    conn: Connection,
    brain_id: str,
    user_id: str | None,
    *,
    limit: int,
    as_of: int | None = None,
    known_at: int | None = None,
) -> list[tuple[str, str]]:
    """The contents of both sides of the user's unresolved conflicts whose memories are both
    current (or, with `as_of`, both valid then), newest first: what a summary must show side
    by side rather than one of them alone. With `known_at`, the conflicts open at that moment
    between memories the store held then, each side as it read then."""
    same_user = "c.user_id = :user" if user_id is not None else "c.user_id IS NULL"
    alive = ["{m}.state = 'active' AND {m}.superseded_by IS NULL"]
    still_open = "c.status = 'needs_review'"
    params: dict[str, Any] = {"brain": brain_id, "user": user_id, "limit": limit}
    if as_of is not None or known_at is not None:
        alive = []
    if as_of is not None:
        alive += validtime.as_of_sql(params, as_of, "{m}.")
    if known_at is not None:
        alive += validtime.known_at_sql(params, known_at, "{m}.")
        # Open then: found by then, and not closed (resolved, dismissed, superseded) by then.
        still_open = (
            "c.created_at <= :known_at AND (c.status = 'needs_review' "
            "OR coalesce(c.resolved_at, c.updated_at) > :known_at)"
        )
    both = " AND ".join(alive)
    rows = conn.execute(
        sql(
            "SELECT a.id, a.content, b.id, b.content FROM memory_conflict_resolutions c "
            "JOIN memories a ON a.id = c.a_id JOIN memories b ON b.id = c.b_id "
            f"WHERE c.brain_id = :brain AND {same_user} AND {still_open} "
            f"AND {both.format(m='a')} AND {both.format(m='b')} "
            "ORDER BY c.created_at DESC, c.id DESC LIMIT :limit"
        ),
        params,
    ).all()
    if known_at is None:
        return [(row[1], row[3]) for row in rows]
    then = validtime.contents_then(
        conn, brain_id, [i for r in rows for i in (r[0], r[2])], known_at
    )
    return [
        (then.get(a, (a_text, 0))[0], then.get(b, (b_text, 0))[0]) for a, a_text, b, b_text in rows
    ]


def _fetch(conn: Connection, scope: Scope, conflict_id: str, *, lock: bool = False) -> Row[Any]:
    params: dict[str, Any] = {"id": conflict_id}
    suffix = " FOR UPDATE" if lock and conn.dialect.name == "postgresql" else ""
    row = conn.execute(
        sql(
            f"SELECT {_CONFLICT_COLUMNS} FROM memory_conflict_resolutions "
            f"WHERE {scope.where(params)} AND id = :id{suffix}"
        ),
        params,
    ).first()
    if row is None:
        raise NotFound(f"no conflict {conflict_id!r}", code="conflict_not_found")
    return row


def _with_memories(conn: Connection, scope: Scope, items: list[ConflictRecord]) -> None:

    found = _memories(conn, scope.brain_id, [i for c in items for i in (c["a_id"], c["b_id"])])

    def seen(memory_id: str) -> MemoryRecord | None:
        row = found.get(memory_id)
        visible = row is not None and scope.user_id in (None, row.user_id)
        return to_dict(row) if visible and row is not None else None

    for item in items:
        item["a"], item["b"] = seen(item["a_id"]), seen(item["b_id"])


def get(conn: Connection, scope: Scope, conflict_id: str) -> ConflictRecord:
    item = _to_dict(_fetch(conn, scope, conflict_id))
    _with_memories(conn, scope, [item])
    return item


def list_conflicts(
    conn: Connection,
    scope: Scope,
    *,
    status: str | None,
    kind: str | None,
    memory_id: str | None,
    user_id: str | None,
    limit: int,
    cursor: str | None,
) -> ConflictPageRecord:
    """Newest first, with the two memories of each conflict."""
    params: dict[str, Any] = {"limit": limit + 1}
    where = [scope.where(params)]
    for column, value in (("status", status), ("kind", kind), ("user_id", user_id)):
        if value is not None:
            where.append(f"{column} = :f_{column}")
            params[f"f_{column}"] = value
    if memory_id is not None:
        where.append("(a_id = :memory OR b_id = :memory)")
        params["memory"] = memory_id
    if past := cursors.keyset(cursor, params):
        where.append(past)
    rows, next_cursor = cursors.page(
        conn.execute(
            sql(
                f"SELECT {_CONFLICT_COLUMNS} FROM memory_conflict_resolutions "
                f"WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT :limit"
            ),
            params,
        ).all(),
        limit,
    )
    items = [_to_dict(r) for r in rows]
    _with_memories(conn, scope, items)
    return {"results": items, "next_cursor": next_cursor}


# Resolving ------------------------------------------------------------------------------------


def _memory_in_scope(conn: Connection, scope: Scope, memory_id: str) -> Row[Any]:
    params: dict[str, Any] = {"id": memory_id}
    suffix = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
    row = conn.execute(
        sql(f"SELECT {COLUMNS} FROM memories WHERE {scope.where(params)} AND id = :id{suffix}"),
        params,
    ).first()
    if row is None:
        raise NotFound(f"no memory {memory_id!r}", code="memory_not_found")
    return row


def resolve(
    conn: Connection,
    scope: Scope,
    conflict_id: str,
    *,
    winner_id: str,
    mode: Mode,
    note: str | None,
    index: Indexer,
    actor_id: str | None = None,
    role: str | None = None,
) -> ConflictRecord:
    scope.require_write()
    conflict = _fetch(conn, scope, conflict_id, lock=True)
    if conflict.status not in ("needs_review", "dismissed"):
        raise Conflict(
            f"this conflict is already {conflict.status}",
            code="conflict_closed",
            details={"status": conflict.status},
        )
    if winner_id not in (conflict.a_id, conflict.b_id):
        raise InvalidInput(
            "winner_id must be one of the conflict's two memories",
            details={"field": "winner_id", "allowed": [conflict.a_id, conflict.b_id]},
        )
    loser_id = conflict.b_id if winner_id == conflict.a_id else conflict.a_id
    winner = _memory_in_scope(conn, scope, winner_id)
    loser = _memory_in_scope(conn, scope, loser_id)
    if winner.state != "active" or loser.state == "deleted":
        raise Conflict(
            "the winner must be active and the loser not deleted: restore it, or dismiss the "
            "conflict",
            code="memory_not_active",
            details={"winner_state": winner.state, "loser_state": loser.state},
        )
    now = now_ms()
    lifecycle.lose_conflict(
        conn,
        scope,
        loser,
        winner,
        conflict_id=conflict_id,
        mode=mode,
        now=now,
        index=index,
        actor_id=actor_id,
        role=role,
    )
    conn.execute(
        sql(
            "UPDATE memory_conflict_resolutions SET status = 'resolved', canonical_id = :winner, "
            "mode = :mode, note = :note, updated_at = :now, resolved_at = :now "
            "WHERE brain_id = :brain AND id = :id"
        ),
        {
            "winner": winner_id,
            "mode": mode,
            "note": note,
            "now": now,
            "brain": scope.brain_id,
            "id": conflict_id,
        },
    )
    # The loser's other open conflicts are moot now that it is superseded.
    mark_superseded(conn, scope.brain_id, [loser_id], now)
    detail = {"reason": "conflict", "conflict_id": conflict_id, "mode": mode}
    history.record(
        conn,
        history.entry(
            scope,
            memory_id=winner_id,
            user_id=winner.user_id,
            event="UPDATE",
            old=winner.content,
            new=winner.content,
            detail={**detail, "supersedes": loser_id},
            actor_id=actor_id,
            role=role,
            at=now,
        ),
    )
    changelog.record(
        conn,
        scope,
        event_type="conflict.resolved",
        entity_type="conflict",
        entity_id=conflict_id,
        summary=f"Conflict resolved: kept {winner_id}, {mode}d {loser_id}",
        user_id=conflict.user_id,
        actor_id=actor_id,
        payload={"winner_id": winner_id, "loser_id": loser_id, "mode": mode},
        at=now,
    )
    return get(conn, scope, conflict_id)


def dismiss(
    conn: Connection,
    scope: Scope,
    conflict_id: str,
    *,
    note: str | None,
    actor_id: str | None = None,
) -> ConflictRecord:
    """Not a conflict after all: the pair is never flagged again."""
    scope.require_write()
    conflict = _fetch(conn, scope, conflict_id, lock=True)
    if conflict.status != "needs_review":
        raise Conflict(
            f"this conflict is already {conflict.status}",
            code="conflict_closed",
            details={"status": conflict.status},
        )
    now = now_ms()
    conn.execute(
        sql(
            "UPDATE memory_conflict_resolutions SET status = 'dismissed', note = :note, "
            "updated_at = :now WHERE brain_id = :brain AND id = :id"
        ),
        {"note": note, "now": now, "brain": scope.brain_id, "id": conflict_id},
    )
    changelog.record(
        conn,
        scope,
        event_type="conflict.dismissed",
        entity_type="conflict",
        entity_id=conflict_id,
        summary=f"Conflict dismissed between {conflict.a_id} and {conflict.b_id}",
        user_id=conflict.user_id,
        actor_id=actor_id,
        payload={"note": note},
        at=now,
    )
    return get(conn, scope, conflict_id)
