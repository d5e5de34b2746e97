"""Search and context packs over one scope: candidates from the full-text index and the vector
cache, read back from SQL under the caller's scope and filters, then ranked."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection

from core.kernel import cursor as cursors
from core.kernel.config import RankingSettings
from core.kernel.db.engine import sql, tuples
from core.kernel.db.id_lists import id_table
from core.kernel.errors import InvalidInput
from core.kernel.ids import now_ms, parse_time
from core.kernel.scope import Scope
from core.memory import gate, trust
from core.memory.store import COLUMNS, filter_sql, from_values
from core.retrieval import lexical, pgvector, vectors
from core.retrieval.filters import MetadataFilter
from core.retrieval.models import SearchFilters, SearchIn
from core.retrieval.ranking import Candidates, Standardiser, rank, standardiser

_MIN_CANDIDATES = 50
_CONTEXT_FROM = 30
# What ranking reads of each candidate, in _Pool.describe's order; the page's memories are
# then read in full.
_RANK_COLUMNS = (
    "m.id, m.user_id, m.importance, m.confidence, m.superseded_by, m.occurred_at, "
    "m.created_at, m.source"
)
_PAGE_COLUMNS = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class QueryVector:
    """The query embedded outside the transaction (an embedder may call a remote API)."""

    model: str
    dims: int
    vector: np.ndarray | None  # None in lexical mode: the cache then only counts the scope
    noise: float
    strong: float
    lexical_weight: float  # the embedder's default say in hybrid mode
    # Search this model's vectors with pgvector's HNSW index instead of the numpy cache
    # (core/retrieval/pgvector.py; set when MNEMO_PGVECTOR=auto finds the extension).
    pgvector: bool = False


def default_lexical_weight(model: str) -> float:
    """How much the lexical evidence counts in hybrid mode for vectors of this model. The
    builtin feature-hashing vectors mostly repeat what the words already say (measured on the
    LoCoMo dev split: docs/benchmarks.md), a trained model adds meaning the words miss."""
    return 0.9 if model.startswith("builtin") else 0.6


def _where(
    conn: Connection, scope: Scope, filters: SearchFilters, params: dict[str, Any]
) -> list[str]:
    where = filter_sql(scope, filters, params, alias="m")
    for bound, op in ((filters.occurred_after, ">="), (filters.occurred_before, "<")):
        if bound is not None:
            name = f"o_{len(params)}"
            where.append(f"coalesce(m.occurred_at, m.created_at) {op} :{name}")
            params[name] = parse_time(bound)
    if filters.metadata is not None:
        where.append(MetadataFilter(conn.dialect.name, params).sql(filters.metadata))
    return where


def _cursor_key(request: SearchIn) -> str:
    body = request.model_dump(mode="json", exclude={"cursor", "explain"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def search(
    conn: Connection,
    scope: Scope,
    request: SearchIn,
    query_vector: QueryVector | None,
    ranking: RankingSettings,
) -> dict[str, Any]:
    filters = request.filters
    if request.user_id is not None:
        filters = filters.model_copy(update={"user_id": request.user_id})
    offset = 0
    if request.cursor is not None:
        position = cursors.decode(request.cursor, keys=("o", "q"))
        if position["q"] != _cursor_key(request):
            raise InvalidInput(
                "this cursor belongs to another search: send the same query and filters",
                details={"field": "cursor"},
            )
        offset = int(position["o"])
    wanted = offset + request.limit
    n = max(_MIN_CANDIDATES, 3 * wanted)
    params: dict[str, Any] = {}
    where = _where(conn, scope, filters, params)

    semantic = _Semantic.load(conn, scope, filters, request.mode, query_vector, ranking)
    population = semantic.population if semantic else _count(conn, where, params)
    # Lexical matches come with their rank columns (the match applied the scope and filters).
    matches: list[tuple[Any, ...]] = []
    if request.mode != "semantic":
        matches = lexical.candidates(
            conn,
            lexical.query_terms(request.query),
            where,
            params,
            n,
            brain_id=scope.brain_id,
            user_id=scope.user_id or filters.user_id,
            columns=_RANK_COLUMNS,
            in_scope=population,
        )
    lexical_raw = {row[1]: float(row[0]) for row in matches}
    evidence = _Evidence(
        lexical_raw,
        lexical_std=standardiser(
            np.fromiter(lexical_raw.values(), float),
            population,
            prior=ranking.prior_weight,
            prior_value=0.0,
            min_std=1e-9,
        ),
        semantic=semantic,
        lexical_weight=_lexical_weight(request.mode, ranking, query_vector),
    )

    found = [row[1:] for row in matches]
    if semantic is not None and request.mode != "lexical":
        nearest = [i for i in semantic.top(n) if i not in lexical_raw]
        found += _read_back(conn, where, params, nearest, _RANK_COLUMNS)
    pool = _Pool(evidence)
    pool.add(found)
    if not pool.rows:
        return {"results": [], "next_cursor": None, "touched": []}

    # Thread context: the best candidates lend evidence to the memories saved next to them.
    fused = pool.fused()
    best = np.argsort(-fused, kind="stable")[: max(_CONTEXT_FROM, 3 * wanted)]
    threads = _neighbours(conn, scope.brain_id, [pool.rows[k] for k in best.tolist()])
    extra = [i for pair in threads.values() for i in pair if i and i not in pool.position]
    if extra:
        pool.add(_read_back(conn, where, params, list(dict.fromkeys(extra)), _RANK_COLUMNS))
        fused = pool.fused()
    background = evidence.background()
    before_of: dict[str, str | None] = {}
    after_of: dict[str, str | None] = {}
    for memory_id, (before, after) in threads.items():
        before_of[memory_id], after_of[memory_id] = before, after
        if before:
            after_of.setdefault(before, memory_id)
        if after:
            before_of.setdefault(after, memory_id)

    ids = pool.ids
    position = pool.position

    def shares(neighbour_of: dict[str, str | None]) -> np.ndarray:
        """The evidence of each candidate's neighbour on one side (background if none)."""
        slots = np.array(
            [position.get(m, -1) if (m := neighbour_of.get(i)) else -1 for i in ids], np.int64
        )
        return np.where(slots >= 0, fused[slots], background)

    context = (
        ranking.context_before * shares(before_of)
        + ranking.context_after * shares(after_of)
        - (ranking.context_before + ranking.context_after) * background
    )
    ranked = rank(pool.describe(conn, scope.brain_id, context), ranking)
    scores = ranked.scores
    kept = np.flatnonzero((scores > 0.0) & (scores >= request.min_score)).tolist()
    order = sorted(kept, key=lambda k: (-scores[k], ids[k]))
    page = order[offset:wanted]
    page_rows = _read_back(conn, where, params, [ids[k] for k in page], _PAGE_COLUMNS)
    full = {row[0]: row for row in page_rows}
    results = []
    for k in page:
        hit: dict[str, Any] = {"memory": from_values(full[ids[k]]), "score": float(scores[k])}
        if request.explain:
            hit["explain"] = ranked.factors(k).__dict__.copy()
        results.append(hit)
    next_cursor = None
    if len(order) > wanted:
        next_cursor = cursors.encode({"o": wanted, "q": _cursor_key(request)})
    return {
        "results": results,
        "next_cursor": next_cursor,
        "touched": [ids[k] for k in page],
    }


@dataclass
class _Pool:
    """The candidates SQL confirmed are in scope, in reading order: their rank columns
    (_RANK_COLUMNS) and weighted evidence, which is computed once per batch read."""

    evidence: _Evidence
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict)
    lexical: np.ndarray = field(default_factory=lambda: np.zeros(0))
    semantic: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        ids = [row[0] for row in rows]
        lexical_part, semantic_part = self.evidence.parts(ids)
        self.position.update(zip(ids, range(len(self.ids), len(self.ids) + len(ids)), strict=True))
        self.rows += rows
        self.ids += ids
        self.lexical = np.concatenate([self.lexical, lexical_part])
        self.semantic = np.concatenate([self.semantic, semantic_part])

    def fused(self) -> np.ndarray:
        total: np.ndarray = self.lexical + self.semantic
        return total

    def describe(self, conn: Connection, brain_id: str, context: np.ndarray) -> Candidates:
        """The ranking arrays: evidence first, then the memories' own qualities."""
        _, _, importance, confidence, superseded_by, occurred, created, sources = zip(
            *self.rows, strict=True
        )
        # One small indexed query for the candidates' sources (none when none has one).
        trust_of = trust.lookup(conn, brain_id, sources)
        when = [o if o is not None else c for o, c in zip(occurred, created, strict=True)]
        return Candidates(
            lexical=self.lexical,
            semantic=self.semantic,
            context=context,
            importance=np.array(importance, dtype=np.float64),
            confidence=np.array(confidence, dtype=np.float64),
            trust=np.array(
                [trust_of.get(s, trust.NEUTRAL) if s else trust.NEUTRAL for s in sources]
            ),
            age_days=(now_ms() - np.array(when, dtype=np.float64)) / _DAY_MS,
            superseded=np.array([s is not None for s in superseded_by], dtype=bool),
        )


def _lexical_weight(mode: str, ranking: RankingSettings, vector: QueryVector | None) -> float:
    if mode == "lexical" or vector is None:
        return 1.0
    if mode == "semantic":
        return 0.0
    if ranking.lexical_weight is not None:
        return ranking.lexical_weight
    return vector.lexical_weight


@dataclass
class _Semantic:
    """Cosines of the query with every memory in scope that has a vector of the query's model."""

    cache: vectors.Snapshot
    sims: np.ndarray
    mask: np.ndarray
    std: Standardiser
    noise: float

    @classmethod
    def load(
        cls,
        conn: Connection,
        scope: Scope,
        filters: SearchFilters,
        mode: str,
        vector: QueryVector | None,
        ranking: RankingSettings,
    ) -> _Semantic | pgvector.PgSemantic | None:
        if vector is None:
            return None
        states = None if filters.state == "all" else (filters.state,)
        user = scope.user_id or filters.user_id
        if vector.pgvector:
            if mode == "lexical" or vector.vector is None:
                return None  # the scope is counted in SQL instead: no vector cache to load
            return pgvector.PgSemantic.load(
                conn,
                brain_id=scope.brain_id,
                user_id=user,
                states=states,
                model=vector.model,
                vector=vector.vector,
                noise=vector.noise,
                strong=vector.strong,
                prior=ranking.prior_weight,
            )
        cache = vectors.cached(conn, scope.brain_id, vector.model, vector.dims)
        if mode == "lexical" or vector.vector is None:
            mask = cache.scope_mask(user_id=user, states=states)
            return cls(cache, np.zeros(len(mask), np.float32), mask, Standardiser(0.0, 1.0), 0.0)
        sims, mask = cache.similarities(vector.vector, user_id=user, states=states)
        in_scope = sims[mask]
        std = standardiser(
            in_scope,
            len(in_scope),
            prior=ranking.prior_weight,
            prior_value=vector.noise,
            min_std=(vector.strong - vector.noise) / 4,
        )
        return cls(cache, sims, mask, std, vector.noise)

    @property
    def population(self) -> int:
        return int(self.mask.sum())

    def top(self, n: int) -> list[str]:
        return [memory_id for memory_id, _ in self.cache.top(self.sims, self.mask, n)]

    def z(self, ids: list[str]) -> np.ndarray:
        """Standardised cosines; a memory without a vector of this model counts as average."""
        cosines = self.cache.cosines(self.sims, ids, missing=self.std.mean)
        return self.std.z(cosines)


@dataclass
class _Evidence:
    lexical_raw: dict[str, float]
    lexical_std: Standardiser
    semantic: _Semantic | pgvector.PgSemantic | None
    lexical_weight: float

    def parts(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The weighted lexical and semantic z-scores of these memories."""
        lexical_part = np.zeros(len(ids))
        if self.lexical_weight > 0:
            raw = np.array([self.lexical_raw.get(i, 0.0) for i in ids])
            lexical_part = self.lexical_weight * self.lexical_std.z(raw)
        semantic_part = np.zeros(len(ids))
        if self.semantic is not None and self.lexical_weight < 1:
            semantic_part = (1 - self.lexical_weight) * self.semantic.z(ids)
        return lexical_part, semantic_part

    def fused(self, ids: list[str]) -> np.ndarray:
        lexical_part, semantic_part = self.parts(ids)
        total: np.ndarray = lexical_part + semantic_part
        return total

    def background(self) -> float:
        """The evidence of a memory that matches no word and is of average similarity."""
        return self.lexical_weight * self.lexical_std.z(0.0)


def _count(conn: Connection, where: list[str], params: dict[str, Any]) -> int:
    statement = f"SELECT count(*) FROM memories m WHERE {' AND '.join(where)}"
    return int(conn.execute(sql(statement), params).scalar_one())


def _neighbours(
    conn: Connection, brain_id: str, rows: list[tuple[Any, ...]]
) -> dict[str, tuple[str | None, str | None]]:
    """memory id -> (the memory saved just before it, just after it) by the same user, for
    candidate rows that start (id, user_id)."""
    by_user: dict[str | None, list[str]] = {}
    for memory_id, user_id, *_ in rows:
        by_user.setdefault(user_id, []).append(memory_id)
    found: dict[str, tuple[str | None, str | None]] = {}
    for user_id, ids in by_user.items():
        members, value = id_table(conn, "ids", alias="ids")
        params: dict[str, Any] = {"brain": brain_id, "u": user_id, "ids": value(ids)}
        same_user = "p.user_id = :u" if user_id is not None else "p.user_id IS NULL"
        before = (
            f"SELECT p.id FROM memories p WHERE p.brain_id = :brain AND {same_user} AND "
            "(p.created_at, p.id) < (c.created_at, c.id) "
            "ORDER BY p.created_at DESC, p.id DESC LIMIT 1"
        )
        after = (
            f"SELECT p.id FROM memories p WHERE p.brain_id = :brain AND {same_user} AND "
            "(p.created_at, p.id) > (c.created_at, c.id) "
            "ORDER BY p.created_at, p.id LIMIT 1"
        )
        join = "CROSS JOIN" if conn.dialect.name == "sqlite" else "JOIN"
        statement = (
            f"SELECT c.id, ({before}) AS before, ({after}) AS after "
            f"FROM {members} {join} memories c ON c.id = ids.value "
            "WHERE c.brain_id = :brain"
        )
        for memory_id, prev, nxt in tuples(conn, statement, params):
            found[memory_id] = (prev, nxt)
    return found


def _read_back(
    conn: Connection, where: list[str], params: dict[str, Any], ids: list[str], columns: str
) -> list[tuple[Any, ...]]:
    """`columns` (of alias m) of those candidates that really are in scope and match the
    filters: SQL has the last word on every candidate, the page's included.

    The id list drives the join (CROSS JOIN fixes SQLite's loop order): a primary-key lookup
    per candidate, not a walk through every memory the scope's filters select."""
    if not ids:
        return []
    members, value = id_table(conn, "candidates")
    join = "CROSS JOIN" if conn.dialect.name == "sqlite" else "JOIN"
    statement = (
        f"SELECT {columns} FROM {members} {join} memories m ON m.id = c.value "
        f"WHERE {' AND '.join(where)}"
    )
    return tuples(conn, statement, {**params, "candidates": value(ids)})


def record_access(conn: Connection, scope: Scope, memory_ids: list[str]) -> None:
    """Returned memories count as accessed (ranking and decay read this), and the write
    gate's echo guard notes that this caller was shown them."""
    if not memory_ids:
        return
    gate.record_recall(conn, scope, memory_ids)
    # A short list of bound ids, served by the primary key. SQLite's planner, left alone,
    # walks the brain's index instead; a unary + takes that index out of its choices.
    brain = "+brain_id" if conn.dialect.name == "sqlite" else "brain_id"
    names = [f"a_{i}" for i in range(len(memory_ids))]
    params: dict[str, Any] = {"brain": scope.brain_id, "now": now_ms()}
    params.update(zip(names, memory_ids, strict=True))
    conn.execute(
        sql(
            "UPDATE memories SET access_count = access_count + 1, last_accessed_at = :now "
            f"WHERE id IN ({', '.join(':' + n for n in names)}) AND {brain} = :brain"
        ),
        params,
    )


def list_filtered(
    conn: Connection, scope: Scope, filters: SearchFilters, *, limit: int, offset: int
) -> dict[str, Any]:
    """Memories that match every filter search takes (metadata and column expressions
    included), newest first, by page number rather than cursor: mem0's get_all counts its
    pages, so the total comes along."""
    params: dict[str, Any] = {}
    where = " AND ".join(_where(conn, scope, filters, params))
    total = conn.execute(sql(f"SELECT count(*) FROM memories m WHERE {where}"), params).scalar()
    columns = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
    rows = conn.execute(
        sql(
            f"SELECT {columns} FROM memories m WHERE {where} "
            "ORDER BY m.created_at DESC, m.id DESC LIMIT :limit OFFSET :offset"
        ),
        {**params, "limit": limit, "offset": offset},
    ).all()
    return {"results": [from_values(tuple(r)) for r in rows], "total": int(total or 0)}
