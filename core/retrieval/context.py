"""Context packs: the best memories for a prompt, packed under a token budget with citations."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Connection

from core.kernel.config import RankingSettings
from core.kernel.db.engine import sql
from core.kernel.scope import Scope
from core.memory.store import COLUMNS, filter_sql, to_dict
from core.retrieval.models import ContextIn, SearchIn
from core.retrieval.search import QueryVector, search

# Links worth following from a hit: what supports, explains or illustrates it.
_FOLLOW = ("supports", "related", "causes", "example_of")
_EXPAND_FROM = 10
_LINK_DISCOUNT = 0.5


def estimate_tokens(line: str) -> int:
    """About four bytes of English per token, as GPT-style tokenizers average."""
    return max(1, math.ceil(len(line.encode()) / 4))


def _line(memory: dict[str, Any]) -> str:
    about = [memory["type"]]
    if memory["key"]:
        about.append(f"key: {memory['key']}")
    when = memory["occurred_at"] or memory["created_at"]
    about.append(when[:10])
    title = f"{memory['title']}: " if memory["title"] else ""
    return f"{title}{' '.join(memory['content'].split())} ({', '.join(about)})"


def _linked(
    conn: Connection, scope: Scope, request: ContextIn, hits: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Active memories linked to the top hits, in scope and matching the filters."""
    sources = {h["memory"]["id"]: h["score"] for h in hits[:_EXPAND_FROM]}
    if not sources:
        return []
    params: dict[str, Any] = {}
    filters = request.filters
    if request.user_id is not None:
        filters = filters.model_copy(update={"user_id": request.user_id})
    where = filter_sql(scope, filters, params, alias="m")
    names = [f"s_{i}" for i in range(len(sources))]
    params.update(zip(names, sources, strict=True))
    members = ", ".join(f":{n}" for n in names)
    relations = ", ".join(f"'{r}'" for r in _FOLLOW)
    columns = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
    rows = conn.execute(
        sql(
            f"SELECT {columns}, l.from_id, l.to_id, l.weight FROM memory_links l "
            "JOIN memories m ON m.id = CASE WHEN l.from_id IN "
            f"({members}) THEN l.to_id ELSE l.from_id END "
            f"WHERE l.brain_id = :brain AND l.relation IN ({relations}) "
            f"AND (l.from_id IN ({members}) OR l.to_id IN ({members})) "
            f"AND {' AND '.join(where)}"
        ),
        params,
    ).all()
    found = []
    for row in rows:
        via = row.from_id if row.from_id in sources else row.to_id
        weight = max(0.0, min(1.0, float(row.weight)))
        memory = to_dict(row)
        for extra in ("from_id", "to_id", "weight"):
            memory.pop(extra, None)
        found.append(
            {
                "memory": memory,
                "score": round(sources[via] * _LINK_DISCOUNT * weight, 6),
                "via": via,
            }
        )
    return found


def pack(
    conn: Connection,
    scope: Scope,
    request: ContextIn,
    query_vector: QueryVector | None,
    ranking: RankingSettings,
) -> dict[str, Any]:
    found = search(
        conn,
        scope,
        SearchIn(
            query=request.query,
            limit=request.limit,
            filters=request.filters,
            user_id=request.user_id,
        ),
        query_vector,
        ranking,
    )
    hits: list[dict[str, Any]] = found["results"]
    if request.expand_links:
        seen = {h["memory"]["id"] for h in hits}
        hits += [h for h in _linked(conn, scope, request, hits) if h["memory"]["id"] not in seen]
    hits.sort(key=lambda h: -h["score"])

    lines: list[str] = []
    citations: list[dict[str, Any]] = []
    omitted: list[dict[str, Any]] = []
    contents: set[str] = set()
    used = 0
    for hit in hits:
        memory = hit["memory"]
        if memory["superseded_by"] is not None or memory["state"] != "active":
            omitted.append({"id": memory["id"], "reason": "superseded"})
            continue
        if hit["score"] < request.min_score:
            omitted.append({"id": memory["id"], "reason": "below_min_score"})
            continue
        if memory["content"] in contents:
            omitted.append({"id": memory["id"], "reason": "duplicate"})
            continue
        n = len(citations) + 1
        line = f"[{n}] {_line(memory)}"
        tokens = estimate_tokens(line) + 1  # the newline
        if used + tokens > request.max_tokens:
            omitted.append({"id": memory["id"], "reason": "budget"})
            continue
        used += tokens
        contents.add(memory["content"])
        lines.append(line)
        citations.append(
            {
                "n": n,
                "id": memory["id"],
                "score": hit["score"],
                "tokens": tokens,
                "via": hit.get("via"),
            }
        )
    return {
        "text": "\n".join(lines),
        "tokens": used,
        "citations": citations,
        "omitted": omitted,
        "touched": [c["id"] for c in citations],
    }
