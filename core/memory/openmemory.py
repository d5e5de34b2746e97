"""OpenMemory's sectors over Mnemo's memories: which sector a memory is in, a sector's (or a
user's) memories, each sector's counts, and OpenMemory's reinforce. What runs SQL lives here;
OpenMemory's request and response shapes are handlers/openmemory_mapping.py's.

OpenMemory files every memory under one of five sectors; Mnemo has memory types (note, fact,
journal) and tags. A memory's sector is the first of its tags that names a sector (`episodic`,
`semantic`, `procedural`, `emotional`, `reflective`, or the same with a `sector:` prefix);
without one, a journal entry is `episodic` and a note or a fact is `semantic`. `sector_of`
decides it for one memory and `_sector_clause` in SQL, by the same rule.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, text

from core.kernel.config import Limits
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.indexing import Indexer
from core.memory.models import MemoryPatch, MemoryRecord, SectorCountRecord, SectorMemoryRecord
from core.memory.store import COLUMNS

SECTORS = ("episodic", "semantic", "procedural", "emotional", "reflective")
# Sectors only a tag can give: a search can filter on them directly.
TAG_SECTORS = ("procedural", "emotional", "reflective")
_PREFIX = "sector:"


def sector_of(memory_type: str, tags: list[str]) -> str:
    for tag in tags:
        name = tag[len(_PREFIX) :] if tag.startswith(_PREFIX) else tag
        if name in SECTORS:
            return name
    return "episodic" if memory_type == "journal" else "semantic"


def sector_tags(sector: str) -> list[str]:
    """The tags that put a memory in a tag-only sector."""
    return [sector, _PREFIX + sector]


def user_memories(
    conn: Connection, scope: Scope, user_id: str, *, limit: int, offset: int
) -> list[SectorMemoryRecord]:
    """A user's active memories, newest first. A user nobody wrote for, or one outside a
    user-scoped key's user, simply has none."""
    if scope.user_id is not None and scope.user_id != user_id:
        return []
    return all_memories(conn, scope, user_id=user_id, limit=limit, offset=offset)


def _sector_clause(sector: str, params: dict[str, Any]) -> str:
    """SQL for "memory m is in this sector", as `sector_of` decides it: a sector tag wins,
    else the type (the first sector tag decides in `sector_of`; a memory carrying two sector
    tags, which nothing makes, is found under both here)."""
    all_tags = [t for name in SECTORS for t in sector_tags(name)]
    names = {f"sec_{i}": t for i, t in enumerate(all_tags)}
    params.update(names)
    tagged = (
        "SELECT 1 FROM memory_tags mt WHERE mt.brain_id = m.brain_id AND mt.memory_id = m.id "
        "AND mt.tag IN ({})"
    )
    any_sector = tagged.format(", ".join(f":{n}" for n in names))
    own = [n for n, t in names.items() if t in sector_tags(sector)]
    this_sector = tagged.format(", ".join(f":{n}" for n in own))
    by_type = {"episodic": "m.type = 'journal'", "semantic": "m.type <> 'journal'"}.get(sector)
    if by_type is None:
        return f"EXISTS ({this_sector})"
    return f"(EXISTS ({this_sector}) OR (NOT EXISTS ({any_sector}) AND {by_type}))"


def all_memories(
    conn: Connection,
    scope: Scope,
    *,
    user_id: str | None = None,
    sector: str | None = None,
    limit: int,
    offset: int,
) -> list[SectorMemoryRecord]:
    """Active memories (of one user, of one sector), newest first, each with its sector and
    how many times it was edited."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    where = [scope.where(params, "m."), "m.state = 'active'"]
    if user_id is not None:
        where.append("m.user_id = :user")
        params["user"] = user_id
    if sector is not None:
        where.append(_sector_clause(sector, params))
    columns = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
    rows = conn.execute(
        text(
            f"SELECT {columns} FROM memories m WHERE {' AND '.join(where)} "
            "ORDER BY m.created_at DESC, m.id DESC LIMIT :limit OFFSET :offset"
        ),
        params,
    ).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    names = [f"m_{i}" for i in range(len(ids))]
    edits: dict[str, int] = dict(
        conn.execute(
            text(
                "SELECT memory_id, count(*) FROM memory_history WHERE brain_id = :brain "
                f"AND event = 'UPDATE' AND memory_id IN ({', '.join(':' + n for n in names)}) "
                "GROUP BY memory_id"
            ),
            {"brain": scope.brain_id, **dict(zip(names, ids, strict=True))},
        ).all()
    )
    items: list[SectorMemoryRecord] = []
    for row in rows:
        tags = json.loads(row.tags)
        items.append(
            {
                "id": row.id,
                "content": row.content,
                "tags": tags,
                "metadata": json.loads(row.metadata),
                "created_at": row.created_at,
                "updated_at": row.updated_at,
                "last_accessed_at": row.last_accessed_at,
                "importance": row.importance,
                "sector": sector_of(row.type, tags),
                "edits": int(edits.get(row.id, 0)),
            }
        )
    return items


def sector_counts(conn: Connection, scope: Scope) -> list[SectorCountRecord]:
    """Each sector's active memories: how many, and their mean importance."""
    out: list[SectorCountRecord] = []
    for name in SECTORS:
        params: dict[str, Any] = {}
        where = [scope.where(params, "m."), "m.state = 'active'", _sector_clause(name, params)]
        row = conn.execute(
            text(
                f"SELECT count(*) AS n, avg(m.importance) AS mean FROM memories m "
                f"WHERE {' AND '.join(where)}"
            ),
            params,
        ).one()
        out.append({"sector": name, "count": int(row.n), "mean_importance": float(row.mean or 0.0)})
    return out


def reinforce(
    conn: Connection, scope: Scope, memory_id: str, boost: float, limits: Limits, index: Indexer
) -> MemoryRecord:
    """OpenMemory's reinforce: the memory's salience (Mnemo's importance) raised by `boost`,
    capped at 1, as an UPDATE with its history row."""
    current = memories.get(conn, scope, memory_id)
    salience = min(1.0, float(current["importance"]) + boost)
    patch = MemoryPatch(importance=salience)
    return memories.update(conn, scope, memory_id, patch, limits, index)
