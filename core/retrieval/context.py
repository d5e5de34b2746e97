"""Context packs: the best memories for a prompt, packed under a token budget with citations."""

from __future__ import annotations

import math
from typing import Any, NotRequired, TypedDict

from sqlalchemy import Connection

from core.kernel.config import RankingSettings
from core.kernel.db.engine import sql
from core.kernel.scope import Scope
from core.memory.models import MemoryRecord
from core.memory.store import COLUMNS, filter_sql, to_dict
from core.retrieval.models import (
    CitationRecord,
    ContextIn,
    ContextPackRecord,
    OmittedRecord,
    SearchFilters,
    SearchIn,
)
from core.retrieval.search import QueryVector, search

# Links worth following from a hit: what supports, explains or illustrates it.
_FOLLOW = ("supports", "related", "causes", "example_of")
_EXPAND_FROM = 10
_LINK_DISCOUNT = 0.5


class _Candidate(TypedDict):
    """A memory a pack may cite: a search hit, or one reached from a hit (`via`)."""

    memory: MemoryRecord
    score: float
    via: NotRequired[str]


def estimate_tokens(line: str) -> int:
    """About four bytes of English per token, as GPT-style tokenizers average."""
    return max(1, math.ceil(len(line.encode()) / 4))


def _superseded(memory: MemoryRecord, *, as_of: bool) -> bool:
    """Left out of a pack: replaced or archived. As of a past moment, a fact that was current
    then (archived since, its valid time closed) is what the pack is about."""
    if as_of and memory.get("valid_to") is not None:
        return False
    return memory["superseded_by"] is not None or memory["state"] != "active"


def _line(memory: MemoryRecord) -> str:
    about: list[str] = [memory["type"]]
    if memory["key"]:
        about.append(f"key: {memory['key']}")
    when = memory.get("valid_from") or memory["occurred_at"] or memory["created_at"]
    valid_to = memory.get("valid_to")
    about.append(when[:10] if not valid_to else f"{when[:10]} to {valid_to[:10]}")
    title = f"{memory['title']}: " if memory["title"] else ""
    return f"{title}{' '.join(memory['content'].split())} ({', '.join(about)})"


def _linked(
    conn: Connection, scope: Scope, request: ContextIn, hits: list[_Candidate]
) -> list[_Candidate]:
    """Active memories linked to the top hits, in scope and matching the filters."""
    sources = {h["memory"]["id"]: h["score"] for h in hits[:_EXPAND_FROM]}
    if not sources:
        return []
    params: dict[str, Any] = {}
    where = filter_sql(scope, _filters(request), params, alias="m")
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
    found: list[_Candidate] = []
    for row in rows:
        via = row.from_id if row.from_id in sources else row.to_id
        weight = max(0.0, min(1.0, float(row.weight)))
        memory = to_dict(row)  # the memory's columns only, not the link's
        found.append(
            {
                "memory": memory,
                "score": round(sources[via] * _LINK_DISCOUNT * weight, 6),
                "via": via,
            }
        )
    return found


def _filters(request: ContextIn) -> SearchFilters:
    update = {
        name: getattr(request, name)
        for name in ("user_id", "as_of", "known_at")
        if getattr(request, name) is not None
    }
    return request.filters.model_copy(update=update) if update else request.filters


def _contested(
    conn: Connection, scope: Scope, request: ContextIn, hits: list[_Candidate]
) -> tuple[dict[str, list[str]], list[_Candidate]]:
    """Open conflicts among the hits: memory id -> the ids it conflicts with, and the other
    sides not among the hits (in scope and matching the filters), so a pack never shows one
    side of an unresolved disagreement alone."""
    ids = [h["memory"]["id"] for h in hits]
    if not ids:
        return {}, []
    params: dict[str, Any] = {"brain": scope.brain_id}
    names = [f"c_{i}" for i in range(len(ids))]
    params.update(zip(names, ids, strict=True))
    members = ", ".join(f":{n}" for n in names)
    rows = conn.execute(
        sql(
            "SELECT a_id, b_id FROM memory_conflict_resolutions WHERE brain_id = :brain "
            f"AND status = 'needs_review' AND (a_id IN ({members}) OR b_id IN ({members})) "
            "LIMIT 200"
        ),
        params,
    ).all()
    against: dict[str, list[str]] = {}
    for a_id, b_id in rows:
        against.setdefault(a_id, []).append(b_id)
        against.setdefault(b_id, []).append(a_id)
    seen = set(ids)
    missing = [i for i in against if i not in seen]
    if not missing:
        return against, []
    params = {}
    where = filter_sql(scope, _filters(request), params, alias="m")
    names = [f"o_{i}" for i in range(len(missing))]
    params.update(zip(names, missing, strict=True))
    columns = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
    others = conn.execute(
        sql(
            f"SELECT {columns} FROM memories m WHERE m.id IN ({', '.join(':' + n for n in names)}) "
            f"AND {' AND '.join(where)}"
        ),
        params,
    ).all()
    score = {h["memory"]["id"]: h["score"] for h in hits}
    extra: list[_Candidate] = []
    for row in others:
        memory = to_dict(row)
        partner = max((score.get(i, 0.0) for i in against[memory["id"]]), default=0.0)
        extra.append({"memory": memory, "score": partner, "via": against[memory["id"]][0]})
    return against, extra


def pack(
    conn: Connection,
    scope: Scope,
    request: ContextIn,
    query_vector: QueryVector | None,
    ranking: RankingSettings,
) -> ContextPackRecord:
    found = search(
        conn,
        scope,
        SearchIn(
            query=request.query,
            limit=request.limit,
            filters=_filters(request),
        ),
        query_vector,
        ranking,
    )
    # Widened: linked memories join the hits with a `via` of their own.
    hits: list[_Candidate] = [
        {"memory": h["memory"], "score": h["score"]} for h in found["results"]
    ]
    if request.expand_links:
        seen = {h["memory"]["id"] for h in hits}
        hits += [h for h in _linked(conn, scope, request, hits) if h["memory"]["id"] not in seen]
    against, other_sides = _contested(conn, scope, request, hits)
    seen = {h["memory"]["id"] for h in hits}
    hits += [h for h in other_sides if h["memory"]["id"] not in seen]
    hits.sort(key=lambda h: -h["score"])
    if against:
        # The two sides of a disagreement sit together, the stronger side's place first.
        order = {h["memory"]["id"]: i for i, h in enumerate(hits)}
        for memory_id, others in against.items():
            if memory_id in order:
                for other in others:
                    if other in order:
                        order[other] = min(order[other], order[memory_id])
        hits.sort(key=lambda h: (order[h["memory"]["id"]], -h["score"]))
    as_of = _filters(request).as_of is not None

    lines: list[str] = []
    citations: list[CitationRecord] = []
    omitted: list[OmittedRecord] = []
    contents: set[str] = set()
    used = 0
    for hit in hits:
        memory = hit["memory"]
        if _superseded(memory, as_of=as_of):
            omitted.append({"id": memory["id"], "reason": "superseded"})
            continue
        if hit["score"] < request.min_score and memory["id"] not in against:
            omitted.append({"id": memory["id"], "reason": "below_min_score"})
            continue
        if memory["content"] in contents:
            omitted.append({"id": memory["id"], "reason": "duplicate"})
            continue
        n = len(citations) + 1
        line = f"[{n}] {_line(memory)}"
        if memory["id"] in against:
            line += " [contested: an unresolved conflict with another memory]"
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
                "contested": memory["id"] in against,
            }
        )
    return {
        "text": "\n".join(lines),
        "tokens": used,
        "citations": citations,
        "omitted": omitted,
        "touched": [c["id"] for c in citations],
    }
