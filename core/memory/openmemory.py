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
from typing import Any

from sqlalchemy import Connection, text

from core.kernel.ids import parse_time
from core.kernel.scope import Scope
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


def _ms(value: Any) -> int | None:
    """Epoch ms from a stored integer or from the ISO text `memories.to_dict` makes."""
    if value is None:
        return None
    return value if isinstance(value, int) else parse_time(value)


def added(memory: dict[str, Any]) -> dict[str, Any]:
    """POST /memory/add's answer."""
    sector = sector_of(memory["type"], memory["tags"])
    return {"id": memory["id"], "primary_sector": sector, "sectors": [sector], "chunks": 1}


def match(hit: dict[str, Any]) -> dict[str, Any]:
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
        "last_seen_at": _ms(memory["last_accessed_at"] or memory["created_at"]),
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
    rows = conn.execute(
        text(
            f"SELECT {COLUMNS} FROM memories WHERE brain_id = :brain AND user_id = :user "
            "AND state = 'active' ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset"
        ),
        {"brain": scope.brain_id, "user": user_id, "limit": limit, "offset": offset},
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
        sector = sector_of(row.type, tags)
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
                "primary_sector": sector,
                "version": 1 + int(edits.get(row.id, 0)),
            }
        )
    return items


def decay_lambda(half_life_days: float) -> float:
    return math.log(2) / half_life_days if half_life_days > 0 else 0.0
