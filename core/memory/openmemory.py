"""OpenMemory's API over Mnemo's memories: the request and response shapes of OpenMemory v1.2
(POST /memory/add, POST /memory/query, GET /users/{user_id}/memories), so its clients can
switch by changing the base URL.

Sectors. OpenMemory files every memory under one of five sectors; Mnemo has memory types
(note, fact, journal) and tags. The mapping:

  * a memory's sector is the first of its tags that names a sector (`episodic`, `semantic`,
    `procedural`, `emotional`, `reflective`, or the same with a `sector:` prefix); without
    one, a journal entry is `episodic` and a note or a fact is `semantic`;
  * POST /memory/add saves a note (OpenMemory's add has no type); tag it `procedural` (say)
    to file it there;
  * filters.sector on /memory/query keeps the matches of that sector: for `procedural`,
    `emotional` and `reflective` it is a tag filter in the search itself; `episodic` and
    `semantic` also depend on the type, so the search fetches more and the sector is checked
    on each match.

Other differences: Mnemo lower-cases tags; `salience` is the memory's importance; timestamps
are epoch milliseconds as OpenMemory's; `decay_lambda` is the daily rate of Mnemo's recency
decay (ln 2 / MNEMO_SEARCH_HALF_LIFE_DAYS); `version` counts the memory's edits from 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, text

from core.kernel.config import Limits
from core.kernel.ids import parse_time
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.indexing import Indexer
from core.memory.models import MemoryPatch, MemoryRecord, SaveRecord
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


def epoch_ms(value: Any) -> int | None:
    """Epoch ms from a stored integer or from the ISO text `memories.to_dict` makes."""
    if value is None:
        return None
    return value if isinstance(value, int) else parse_time(value)


def added(memory: SaveRecord) -> dict[str, Any]:
    """POST /memory/add's answer, OpenMemory's fields only. A write the write gate held for
    review has no type or tags yet: its id is the quarantine id (GET /v1/quarantine/{id})."""
    if memory["state"] == "quarantined":
        sector = sector_of("note", [])
    else:
        sector = sector_of(memory["type"], memory["tags"])
    return {"id": memory["id"], "primary_sector": sector, "sectors": [sector], "chunks": 1}


def match(hit: Mapping[str, Any]) -> dict[str, Any]:
    """One of POST /memory/query's matches, from a Mnemo search hit."""
    memory = hit["memory"]
    sector = sector_of(memory["type"], memory["tags"])
    return {
        "id": memory["id"],
        "content": memory["content"],
        "score": hit["score"],
        "sectors": [sector],
        "primary_sector": sector,
        "path": [memory["id"]],
        "salience": memory["importance"],
        "last_seen_at": epoch_ms(memory["last_accessed_at"] or memory["created_at"]),
    }


def user_memories(
    conn: Connection,
    scope: Scope,
    user_id: str,
    *,
    limit: int,
    offset: int,
    decay_lambda: float,
) -> list[dict[str, Any]]:
    """A user's active memories, newest first, as OpenMemory's items. A user nobody wrote for,
    or one outside a user-scoped key's user, simply has none."""
    if scope.user_id is not None and scope.user_id != user_id:
        return []
    return all_memories(
        conn, scope, user_id=user_id, limit=limit, offset=offset, decay_lambda=decay_lambda
    )


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
    decay_lambda: float,
) -> list[dict[str, Any]]:
    """Active memories (of one user, of one sector), newest first, as OpenMemory's items."""
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
    items = []
    for row in rows:
        tags = json.loads(row.tags)
        sector_name = sector_of(row.type, tags)
        items.append(
            {
                "id": row.id,
                "content": row.content,
                "tags": tags,
                "metadata": json.loads(row.metadata),
                "created_at": row.created_at,
                "updated_at": row.updated_at,
                "last_seen_at": row.last_accessed_at or row.created_at,
                "salience": row.importance,
                "decay_lambda": decay_lambda,
                "primary_sector": sector_name,
                "version": 1 + int(edits.get(row.id, 0)),
            }
        )
    return items


def sector_stats(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """Each sector's active memories: how many, and their mean salience."""
    out = []
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
        out.append({"sector": name, "count": int(row.n), "avg_salience": float(row.mean or 0.0)})
    return out


# OpenMemory's own description of its sectors (its SDK ships the same table), with the decay
# rate Mnemo applies: one recency half-life for all (see decay_lambda).
SECTOR_INFO = {
    "episodic": ("Event memories - temporal data", "Mnemo: journal entries"),
    "semantic": ("Facts & preferences - factual data", "Mnemo: notes and facts"),
    "procedural": ("Habits, triggers - action patterns", "Mnemo: tag 'procedural'"),
    "emotional": ("Sentiment states - tone analysis", "Mnemo: tag 'emotional'"),
    "reflective": ("Meta memory & logs - audit trail", "Mnemo: tag 'reflective'"),
}


def sectors(rate: float) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "name": name,
            "description": description,
            "model": model,
            "decay_lambda": rate,
            "table_suffix": f"_{name}",
        }
        for name, (description, model) in SECTOR_INFO.items()
    }


def reinforce(
    conn: Connection, scope: Scope, memory_id: str, boost: float, limits: Limits, index: Indexer
) -> MemoryRecord:
    """OpenMemory's reinforce: the memory's salience (Mnemo's importance) raised by `boost`,
    capped at 1, as an UPDATE with its history row."""
    current = memories.get(conn, scope, memory_id)
    salience = min(1.0, float(current["importance"]) + boost)
    patch = MemoryPatch(importance=salience)
    return memories.update(conn, scope, memory_id, patch, limits, index)


def decay_lambda(half_life_days: float) -> float:
    return math.log(2) / half_life_days if half_life_days > 0 else 0.0
