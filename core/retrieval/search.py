"""Search and context packs over one scope: candidates from the full-text index and the vector
cache, read back from SQL under the caller's scope and filters, then ranked."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection, Engine

from core.embeddings import get_embedder
from core.embeddings.base import Embedder
from core.kernel import cursor as cursors
from core.kernel.config import RankingSettings, Settings
from core.kernel.db.engine import sql, tuples
from core.kernel.db.id_lists import id_table, text_array
from core.kernel.errors import InvalidInput
from core.kernel.ids import now_ms, parse_time
from core.kernel.scope import Scope
from core.memory import access, trust, validtime
from core.memory.store import COLUMNS, filter_sql, from_values
from core.retrieval import lexical, near_words, pgvector, temporal, vectors
from core.retrieval.filters import MetadataFilter
from core.retrieval.models import (
    ExplainRecord,
    FilteredPageRecord,
    SearchFilters,
    SearchHitRecord,
    SearchIn,
    SearchPageRecord,
)
from core.retrieval.ranking import (
    Candidates,
    Standardiser,
    rank,
    standardiser,
    thread_context,
    typical,
)

_MIN_CANDIDATES = 50
_CONTEXT_FROM = 30
# Thread context reaches `RankingSettings.context_reach` memories to each side, each place
# farther lending this share of what the nearer one does. Two places is the same speaker's
# next turn in a dialogue: LoCoMo dev hit@10 0.768 -> 0.783 builtin, 0.787 -> 0.802 MiniLM
# (shares 0.3 to 0.7 within 0.003; three places +0.004 more for two more lookups per
# candidate). docs/benchmarks.md.
_FARTHER = 0.5
# What ranking reads of each candidate, in _Pool.describe's order; the page's memories are
# then read in full.
_RANK_COLUMNS = (
    "m.id, m.user_id, m.importance, m.confidence, m.superseded_by, m.occurred_at, "
    "m.created_at, m.source, m.valid_from, m.valid_to"
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

    @classmethod
    def of(cls, embedder: Embedder, vector: np.ndarray | None, *, pgvector: bool) -> QueryVector:
        """A query `embedder` made `vector` of (None: lexical search, the model only)."""
        return cls(
            embedder.name,
            embedder.dims,
            vector,
            embedder.similarity_floor,
            embedder.similarity_strong,
            default_lexical_weight(embedder.name),
            pgvector=pgvector,
        )


def query_vector(engine: Engine, settings: Settings, text: str) -> QueryVector:
    """`text` as search wants it, embedded here: call it with no transaction open."""
    embedder = get_embedder(settings.embedder)
    vector = embedder.embed([text], kind="query")[0] if text.strip() else None
    return QueryVector.of(
        embedder, vector, pgvector=pgvector.ensure(engine, settings.vector_search.pgvector)
    )


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


_MAX_OFFSET = 2**31


def _cursor_key(request: SearchIn) -> str:
    body = request.model_dump(mode="json", exclude={"cursor", "explain"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def search(
    conn: Connection,
    scope: Scope,
    request: SearchIn,
    query_vector: QueryVector | None,
    ranking: RankingSettings,
) -> SearchPageRecord:
    filters = _with_shorthands(request)
    offset = 0
    if request.cursor is not None:
        position = cursors.decode(request.cursor, keys={"o": int, "q": str})
        # The offset sizes the candidate LIMITs (3x): one we never wrote must not overflow them.
        if not 0 <= position["o"] < _MAX_OFFSET:
            raise InvalidInput(
                "cursor is not valid: pass back next_cursor from the previous page unchanged",
                details={"field": "cursor"},
            )
        if position["q"] != _cursor_key(request):
            raise InvalidInput(
                "this cursor belongs to another search: send the same query and filters",
                details={"field": "cursor"},
            )
        offset = position["o"]
    wanted = offset + request.limit
    n = max(_MIN_CANDIDATES, 3 * wanted)
    params: dict[str, Any] = {}
    where = _where(conn, scope, filters, params)

    semantic = _Semantic.load(conn, scope, filters, request.mode, query_vector, ranking)
    population = semantic.population if semantic else _count(conn, where, params)
    # Lexical matches come with their rank columns (the match applied the scope and filters).
    matches: list[tuple[Any, ...]] = []
    # The nearest memories' rows, when they came with the full-text candidates (PostgreSQL).
    nearest: list[tuple[Any, ...]] | None = None
    if request.mode != "semantic":
        matches, nearest = _lexical_matches(
            conn, request.query, scope, filters, ranking, where, params, n, population,
            semantic if request.mode == "hybrid" else None,
        )  # fmt: skip
    lexical_raw = {row[1]: float(row[0]) for row in matches}
    raw_scores = np.fromiter(lexical_raw.values(), float)
    evidence = _Evidence(
        lexical_raw,
        lexical_std=standardiser(
            raw_scores,
            population,
            prior=ranking.prior_weight,
            prior_value=0.0,
            min_std=1e-9,
        ),
        semantic=semantic,
        lexical_weight=_lexical_weight(request.mode, ranking, query_vector),
        lexical_typical=typical(raw_scores, population, prior=ranking.prior_weight),
    )

    found = [row[1:] for row in matches]
    moment = now_ms() if filters.as_of is None else parse_time(filters.as_of)
    time_query = temporal.read_query(request.query, moment)
    reach = max(ranking.context_reach, 0)
    around: _Around | None = None  # thread context read with the nearest (semantic search)
    if nearest is not None:
        found += nearest
    elif semantic is not None and request.mode != "lexical":
        if (
            isinstance(semantic, pgvector.PgSemantic)
            and request.mode == "semantic"
            and semantic.folds(n)
            and _around_in_one(conn)
        ):
            # The nearest and their thread context in one statement: with no full-text
            # candidates the best candidates are the nearest (by cosine, then id).
            around = _around(
                conn, scope.brain_id, [], reach, [], where, params, semantic,
                dates=time_query.matters,
                nearest=(semantic.nearest_rows_sql(n, where, _RANK_COLUMNS),
                         max(_CONTEXT_FROM, 3 * wanted)),
            )  # fmt: skip
            found += semantic.take_nearest(around.nearest, n, where, params, _RANK_COLUMNS, also=[])
            if not semantic.complete(around.nearest, n):
                around = None  # ranked exactly instead: its context is read for those
        elif isinstance(semantic, pgvector.PgSemantic) and not semantic.exact:
            # The nearest, their rows and the lexical candidates' cosines: one statement.
            also = list(lexical_raw)
            found += semantic.nearest_read_back(n, where, params, _RANK_COLUMNS, also=also)
        else:
            if isinstance(semantic, _Semantic):
                # The lexical candidates' exact cosines in the same read as the nearest ones'.
                semantic.rescore(list(lexical_raw))
            top = [i for i in semantic.top(n) if i not in lexical_raw]
            found += _read_candidates(conn, where, params, top, semantic, also=list(lexical_raw))
    pool = _Pool(evidence)
    pool.add(found)
    if not pool.rows:
        return {"results": [], "next_cursor": None, "touched": []}

    # Thread context: the best candidates lend evidence to the memories saved next to them.
    fused = pool.fused()
    best = np.argsort(-fused, kind="stable")[: max(_CONTEXT_FROM, 3 * wanted)]
    best_rows = [pool.rows[k] for k in best.tolist()]
    read: temporal.Read | None = None
    if around is not None and {row[0] for row in best_rows} == set(around.threads):
        # Read with the nearest, for the very candidates search ranks best.
        threads, read = around.threads, around.read
        if around.extra:
            pool.add(around.extra)
            fused = pool.fused()
    elif _around_in_one(conn):
        # Neighbours, their rows and what time-ranking reads of every candidate: one round trip.
        once = _around(
            conn, scope.brain_id, best_rows, reach, pool.ids, where, params, semantic,
            dates=time_query.matters,
        )  # fmt: skip
        threads, read = once.threads, once.read
        if once.extra:
            pool.add(once.extra)
            fused = pool.fused()
    else:
        threads = _neighbours(conn, scope.brain_id, best_rows, reach)
        extra = [i for near in threads.values() for side in near for i in side if i]
        extra = [i for i in dict.fromkeys(extra) if i not in pool.position]
        if extra:
            pool.add(_read_candidates(conn, where, params, extra, semantic))
            fused = pool.fused()
    background = evidence.background()
    # neighbour_of[side][d][memory id]: the memory d + 1 places before (side 0) or after it.
    neighbour_of: tuple[list[dict[str, str]], list[dict[str, str]]] = (
        [{} for _ in range(reach)],
        [{} for _ in range(reach)],
    )
    for memory_id, near in threads.items():
        for side, others in enumerate(near):
            for d, other in enumerate(others):
                if other:
                    neighbour_of[side][d][memory_id] = other
                    neighbour_of[1 - side][d].setdefault(other, memory_id)

    ids = pool.ids
    position = pool.position

    valid_from = np.array(pool.valid_from(), dtype=np.int64)

    def lent(neighbours: dict[str, str]) -> np.ndarray:
        """The evidence of each candidate's neighbour at one position (background if none, or
        if the two were not true at about the same time: not one conversation)."""
        slots = np.array(
            [position.get(m, -1) if (m := neighbours.get(i)) else -1 for i in ids], np.int64
        )
        slots = np.where(temporal.same_time(valid_from, valid_from[slots]), slots, -1)
        return np.where(slots >= 0, fused[slots], background)

    share_before, share_after = context_shares(ranking, query_vector)
    sides = []
    for d in range(reach):
        farther = _FARTHER**d
        sides.append((lent(neighbour_of[0][d]), share_before * farther))
        sides.append((lent(neighbour_of[1][d]), share_after * farther))
    context = thread_context(fused, sides, background)
    ranked = rank(pool.describe(conn, scope.brain_id, context, filters.as_of), ranking)
    in_time = temporal.factors(
        conn, scope.brain_id, ids, pool.valid_from(), time_query, moment, read
    )
    scores = np.round(ranked.scores * in_time, 6)
    kept = np.flatnonzero((scores > 0.0) & (scores >= request.min_score)).tolist()
    order = sorted(kept, key=lambda k: (-scores[k], ids[k]))
    page = order[offset:wanted]
    page_rows = _read_back(conn, where, params, [ids[k] for k in page], _PAGE_COLUMNS)
    full = {row[0]: row for row in page_rows}
    # On PostgreSQL each statement sees what is committed when it starts: a memory another
    # request archived or deleted since the candidates were read is no longer in scope.
    page = [k for k in page if ids[k] in full]
    results: list[SearchHitRecord] = []
    for k in page:
        hit: SearchHitRecord = {
            "memory": from_values(full[ids[k]]),
            "score": round(float(scores[k]), 6),
        }
        if request.explain:
            hit["explain"] = cast(
                ExplainRecord,
                {
                    **ranked.factors(k).__dict__,
                    "time": float(in_time[k]),
                    "score": float(scores[k]),
                },
            )
        results.append(hit)
    if filters.known_at is not None:
        rebuilt = validtime.rebuild(
            conn, scope, [hit["memory"] for hit in results], parse_time(filters.known_at)
        )
        for hit, memory in zip(results, rebuilt, strict=True):
            hit["memory"] = memory
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

    def valid_from(self) -> list[int]:
        """When each candidate became valid (epoch ms)."""
        return [int(r[8] or r[5] or r[6]) for r in self.rows]

    def describe(
        self, conn: Connection, brain_id: str, context: np.ndarray, as_of: Any = None
    ) -> Candidates:
        """The ranking arrays: evidence first, then the memories' own qualities."""
        _, _, importance, confidence, superseded_by, occurred, created, sources, _, valid_to = zip(
            *self.rows, strict=True
        )
        if as_of is not None:
            # As of a moment, a fact that was current then is not demoted for having been
            # superseded since (its valid_to closed); a merged or outvoted one still is.
            superseded_by = tuple(
                None if end is not None else by
                for by, end in zip(superseded_by, valid_to, strict=True)
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


def _lexical_matches(
    conn: Connection,
    query: str,
    scope: Scope,
    filters: SearchFilters,
    ranking: RankingSettings,
    where: list[str],
    params: dict[str, Any],
    n: int,
    population: int,
    semantic: _Semantic | pgvector.PgSemantic | None,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]] | None]:
    """The full-text candidates, (raw score, *_RANK_COLUMNS) of the best n, best first; and,
    when `semantic` (hybrid search) read them in the same statement, the rows of its nearest
    (`PgSemantic.nearest_read_back`'s), else None."""
    user_id = scope.user_id or filters.user_id
    terms = lexical.query_terms(query)
    asked = near_words.asked(terms) if ranking.near_words else []
    fold = isinstance(semantic, pgvector.PgSemantic) and semantic.folds(n)
    if conn.dialect.name == "postgresql" and (asked or fold):
        # One statement where there were three round trips: which words the brain holds, the
        # candidates of the words as typed (with their cosines) and the nearest memories.
        # When the brain holds every word (nearly every search) those are the candidates;
        # else the words one edit away join them and the candidates are read again.
        pg = semantic if fold and isinstance(semantic, pgvector.PgSemantic) else None
        read = lexical.search_read(
            conn, terms, where, {**params, **(pg.params if pg else {})}, n,
            brain_id=scope.brain_id, columns=_RANK_COLUMNS, in_scope=population, asked=asked,
            cosine=pg.cosine_sql() if pg else None,
            nearest=pg.nearest_rows_sql(n, where, _RANK_COLUMNS) if pg else "",
        )  # fmt: skip
        found = read.rows
        if pg:
            pg.noted(read.cosines)
        near = {}
        if not all(word in read.held for word in asked):
            near = near_words.correct(conn, terms, brain_id=scope.brain_id, known=read.held)
        if near:
            found = lexical.candidates(
                conn, _with_near(terms, near), where, params, n, brain_id=scope.brain_id,
                user_id=user_id, columns=_RANK_COLUMNS, in_scope=population,
            )  # fmt: skip
        if pg is None:
            return found, None
        also = [row[1] for row in found]
        return found, pg.take_nearest(read.nearest, n, where, params, _RANK_COLUMNS, also=also)
    if asked:
        terms = _lexical_terms(conn, query, scope.brain_id, ranking)
    return lexical.candidates(
        conn, terms, where, params, n, brain_id=scope.brain_id, user_id=user_id,
        columns=_RANK_COLUMNS, in_scope=population,
    ), None  # fmt: skip


def _with_near(terms: list[str], near: dict[str, list[str]]) -> list[str]:
    """The words, each followed by its near words."""
    return list(dict.fromkeys(t for term in terms for t in (term, *near.get(term, ()))))


def _lexical_terms(
    conn: Connection, query: str, brain_id: str, ranking: RankingSettings
) -> list[str]:
    """The query's words for full-text search; with near words on, a word the index does not
    hold is joined by the indexed words one edit away ("penauts" -> peanuts). The word itself
    stays: corrections are remembered a while, and the word may have been saved since."""
    terms = lexical.query_terms(query)
    if not ranking.near_words:
        return terms
    near = near_words.correct(conn, terms, brain_id=brain_id)
    return _with_near(terms, near)


def context_shares(ranking: RankingSettings, vector: QueryVector | None) -> tuple[float, float]:
    """How much of the evidence of the memory saved just before, and just after, a memory
    borrows: the settings', else the embedder's own. Words alone miss the answer that follows a
    matching turn, so lexical and builtin-vector search borrow more (LoCoMo dev hit@10 0.734 ->
    0.741 at 0.75 / 0.5); a trained model's vectors find much of it themselves, and borrowing
    more only adds neighbours (MiniLM 0.764 at 0.5 / 0.25, 0.752 at 0.75 / 0.5)."""
    words_only = vector is None or vector.model.startswith("builtin")
    before, after = (0.75, 0.5) if words_only else (0.5, 0.25)
    if ranking.context_before is not None:
        before = ranking.context_before
    if ranking.context_after is not None:
        after = ranking.context_after
    return before, after


def _with_shorthands(request: SearchIn) -> SearchFilters:
    """The filters with the request's top-level user_id, as_of and known_at folded in."""
    update = {
        name: getattr(request, name)
        for name in ("user_id", "as_of", "known_at")
        if getattr(request, name) is not None
    }
    return request.filters.model_copy(update=update) if update else request.filters


def _lexical_weight(mode: str, ranking: RankingSettings, vector: QueryVector | None) -> float:
    if mode == "lexical" or vector is None:
        return 1.0
    if mode == "semantic":
        return 0.0
    if ranking.lexical_weight is not None:
        return ranking.lexical_weight
    return vector.lexical_weight


# Candidates the compact cache proposes beyond those asked for, so that rescoring them exactly
# (vectors.exact) still finds the true nearest: the cache's cosines are within ~0.003.
_RESCORE_SPARE = 20


@dataclass
class _Semantic:
    """Cosines of the query with every memory in scope that has a vector of the query's model:
    approximate for all of them from the cache (the scope's statistics, the nearest
    candidates), exact from the table for every candidate ranked."""

    cache: vectors.Snapshot
    sims: np.ndarray
    mask: np.ndarray
    std: Standardiser
    noise: float
    conn: Connection | None = None
    brain_id: str = ""
    vector: QueryVector | None = None
    exact: dict[str, float] = field(default_factory=dict)
    _wanted: list[str] = field(default_factory=list)

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
        states: tuple[str, ...] | None = None if filters.state == "all" else (filters.state,)
        if filters.known_at is not None:
            states = None  # what was active then may be archived or deleted since
        elif filters.as_of is not None:
            states = ("active", "archived")  # superseded facts were true in their time
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
        return cls(cache, sims, mask, std, vector.noise, conn, scope.brain_id, vector)

    @property
    def population(self) -> int:
        return int(self.mask.sum())

    def rescore(self, ids: list[str]) -> None:
        """Exact cosines for these memories too, read with the next batch (top or z)."""
        self._wanted.extend(i for i in ids if i not in self.exact)

    def _rescore(self, ids: list[str]) -> None:
        """Exact cosines for these memories, from the vectors stored (once each)."""
        vector = self.vector
        if self.conn is None or vector is None or vector.vector is None:
            return
        missing = list(dict.fromkeys(i for i in [*self._wanted, *ids] if i not in self.exact))
        self._wanted = []
        if not missing:
            return
        found = vectors.exact(self.conn, self.brain_id, vector.model, vector.dims, missing)
        query = np.asarray(vector.vector, np.float32)
        self.exact.update((i, float(v @ query)) for i, v in found.items())

    def top(self, n: int) -> list[str]:
        proposed = [i for i, _ in self.cache.top(self.sims, self.mask, n + _RESCORE_SPARE)]
        self._rescore(proposed)
        proposed.sort(key=lambda i: -self.exact.get(i, -np.inf))
        return proposed[:n]

    def z(self, ids: list[str]) -> np.ndarray:
        """Standardised cosines; a memory without a vector of this model counts as average."""
        self._rescore(ids)
        mean = self.std.mean
        cosines = np.array([self.exact.get(i, mean) for i in ids], np.float64)
        return self.std.z(cosines)


@dataclass
class _Evidence:
    lexical_raw: dict[str, float]
    lexical_std: Standardiser
    semantic: _Semantic | pgvector.PgSemantic | None
    lexical_weight: float
    lexical_typical: float = 0.0  # the median memory's raw lexical score (ranking.typical)

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
        """The evidence of an unremarkable memory: the median one by words (one that matches
        no word, unless most memories in scope match one) and of average similarity."""
        return self.lexical_weight * self.lexical_std.z(self.lexical_typical)


def _count(conn: Connection, where: list[str], params: dict[str, Any]) -> int:
    statement = f"SELECT count(*) FROM memories m WHERE {' AND '.join(where)}"
    return int(conn.execute(sql(statement), params).scalar_one())


def _neighbours(
    conn: Connection, brain_id: str, rows: list[tuple[Any, ...]], reach: int
) -> dict[str, tuple[list[str | None], list[str | None]]]:
    """memory id -> (the `reach` memories saved just before it, nearest first; those saved
    just after it) by the same user, for candidate rows that start (id, user_id)."""
    if reach <= 0:
        return {}
    by_user: dict[str | None, list[str]] = {}
    for memory_id, user_id, *_ in rows:
        by_user.setdefault(user_id, []).append(memory_id)
    found: dict[str, tuple[list[str | None], list[str | None]]] = {}
    for user_id, ids in by_user.items():
        members, value = id_table(conn, "ids", alias="ids")
        params: dict[str, Any] = {"brain": brain_id, "u": user_id, "ids": value(ids)}
        same_user = "p.user_id = :u" if user_id is not None else "p.user_id IS NULL"
        before = (
            f"(SELECT p.id FROM memories p WHERE p.brain_id = :brain AND {same_user} AND "
            "(p.created_at, p.id) < (c.created_at, c.id) "
            "ORDER BY p.created_at DESC, p.id DESC LIMIT 1 OFFSET {})"
        )
        after = (
            f"(SELECT p.id FROM memories p WHERE p.brain_id = :brain AND {same_user} AND "
            "(p.created_at, p.id) > (c.created_at, c.id) "
            "ORDER BY p.created_at, p.id LIMIT 1 OFFSET {})"
        )
        near = ", ".join(
            [before.format(d) for d in range(reach)] + [after.format(d) for d in range(reach)]
        )
        join = "CROSS JOIN" if conn.dialect.name == "sqlite" else "JOIN"
        statement = (
            f"SELECT c.id, {near} FROM {members} {join} memories c ON c.id = ids.value "
            "WHERE c.brain_id = :brain"
        )
        for memory_id, *others in tuples(conn, statement, params):
            found[memory_id] = (list(others[:reach]), list(others[reach:]))
    return found


def _around_in_one(conn: Connection) -> bool:
    """Whether the thread neighbours, their rows and time-ranking's reads are one statement
    (`_around`): on PostgreSQL, where each statement is a round trip."""
    return conn.dialect.name == "postgresql"


def _around(
    conn: Connection,
    brain_id: str,
    rows: list[tuple[Any, ...]],
    reach: int,
    pool: list[str],
    where: list[str],
    params: dict[str, Any],
    semantic: _Semantic | pgvector.PgSemantic | None,
    *,
    dates: bool,
    nearest: tuple[str, int] | None = None,
) -> _Around:
    """PostgreSQL: `_neighbours` of the candidate `rows`, the rank columns (and cosines) of
    those neighbours not in `pool` (the candidates read so far) that are in scope, and what
    time-ranking reads of every candidate (open conflicts among them; the dates they mention,
    when `dates`), in one statement where they took three or four round trips. The same
    neighbours, rows and conflicts as the statements one at a time (SQLite still runs those:
    there a statement costs no round trip).

    With `nearest` (a semantic search: `PgSemantic.nearest_rows_sql` and how many of them are
    the best), the candidates are those nearest, read in the same statement: `rows` and `pool`
    are then theirs, the best the nearest by cosine, then id, as search ranks them."""
    members, value = id_table(conn, "ctx_best", alias="b")
    pool_ids = "SELECT u.value FROM unnest(CAST(:ctx_pool AS text[])) AS u(value)"
    lead = ""
    if nearest is not None:
        lead = f"nr AS MATERIALIZED ({nearest[0]}), "
        members = (
            '(SELECT nr.id AS value FROM nr ORDER BY nr.cosine DESC, nr.id COLLATE "C" '
            f"LIMIT {int(nearest[1])}) AS b"
        )
        pool_ids = "SELECT nr.id AS value FROM nr"
    cosine, join = "CAST(NULL AS float8)", ""
    if isinstance(semantic, pgvector.PgSemantic) and not semantic.exact:
        join, cosine = semantic.cosine_sql()
        params = {**params, **semantic.params}

    def side(older: bool) -> str:
        # The `reach` memories saved just before (after) the candidate by its user, nearest
        # first: one index scan, where a subquery per place re-read the nearer ones.
        op, order = ("<", "DESC") if older else (">", "ASC")
        near = (
            "ARRAY(SELECT n.id FROM memories n WHERE n.brain_id = :ctx_brain AND {} AND "
            f"(n.created_at, n.id) {op} (c.created_at, c.id) "
            f"ORDER BY n.created_at {order}, n.id {order} LIMIT {int(reach)})"
        )
        # Each branch an equality the (brain, user, created) index serves; CASE runs one.
        return (
            f"CASE WHEN c.user_id IS NULL THEN {near.format('n.user_id IS NULL')} "
            f"ELSE {near.format('n.user_id = c.user_id')} END"
        )

    width = len(_RANK_COLUMNS.split(",")) + 1  # the rank columns and the cosine
    dated = "NULL"
    if dates:
        dated = (
            "(SELECT json_agg(json_build_array(t.memory_id, t.starts_at, t.ends_at)) FROM "
            f"({temporal.dates_sql('ids', ':ctx_brain')}) AS t)"
        )
    columns = ", ".join(c.strip().removeprefix("m.") for c in _RANK_COLUMNS.split(","))
    counted = ", (SELECT nr.count FROM nr LIMIT 1)" if nearest is not None else ""
    statement = (
        f"WITH {lead}nb AS MATERIALIZED (SELECT c.id, {side(True)} AS before, "
        f"{side(False)} AS after FROM {members} JOIN memories c ON c.id = b.value "
        "WHERE c.brain_id = :ctx_brain), "
        "x AS (SELECT DISTINCT e.value FROM nb, unnest(nb.before || nb.after) AS e(value) "
        f"WHERE e.value NOT IN ({pool_ids})), "
        f"r AS MATERIALIZED (SELECT {_RANK_COLUMNS}, {cosine} AS cosine "
        f"FROM x JOIN memories m ON m.id = x.value {join} WHERE {' AND '.join(where)}), "
        f"ids AS ({pool_ids} UNION ALL SELECT r.id FROM r) "
        "SELECT 1, r.*, NULL FROM r UNION ALL "
        f"SELECT 0, {', '.join(['NULL'] * width)}, json_build_array("
        "(SELECT json_agg(json_build_array(nb.id, nb.before, nb.after)) FROM nb), "
        "(SELECT json_agg(json_build_array(t.a_id, t.b_id)) FROM "
        f"({temporal.conflicts_sql('SELECT ids.value FROM ids', ':ctx_brain')}) AS t), "
        f"{dated}{counted})"
    )
    if nearest is not None:
        # The nearest rows themselves; their index count comes once, above, not as JSON in
        # each row (50 values parsed per search).
        statement += (
            f" UNION ALL SELECT 2, {', '.join('nr.' + c for c in columns.split(', '))}, "
            "nr.cosine, NULL FROM nr"
        )
    found = tuples(
        conn,
        statement,
        {
            **params,
            "ctx_brain": brain_id,
            "ctx_best": value([row[0] for row in rows]),
            "ctx_pool": text_array(pool),
        },
    )
    extra = [tuple(row[1:width]) for row in found if row[0] == 1]
    if isinstance(semantic, pgvector.PgSemantic) and not semantic.exact:
        semantic.noted([(row[1], row[width]) for row in found if row[0] == 1])
    near, conflicts, mentioned, *index_count = next(row[-1] for row in found if row[0] == 0)
    padding: list[str | None] = [None] * reach
    threads = {
        memory_id: ((before + padding)[:reach], (after + padding)[:reach])
        for memory_id, before, after in near or []
    }
    read = temporal.Read(
        [(a, b) for a, b in conflicts or []],
        [(m, s, e) for m, s, e in mentioned or []] if dates else None,
    )
    # The nearest rows as nearest_rows_sql reads them: (*columns, cosine, count).
    nearest_rows = [(*row[1:-1], *index_count) for row in found if row[0] == 2]
    return _Around(threads, extra, read, nearest_rows)


@dataclass
class _Around:
    """What `_around` read."""

    threads: dict[str, tuple[list[str | None], list[str | None]]]
    extra: list[tuple[Any, ...]]  # the new neighbours' rank columns
    read: temporal.Read
    nearest: list[tuple[Any, ...]]  # with `nearest`: its rows


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


def _read_candidates(
    conn: Connection,
    where: list[str],
    params: dict[str, Any],
    ids: list[str],
    semantic: _Semantic | pgvector.PgSemantic | None,
    *,
    also: list[str] | None = None,
) -> list[tuple[Any, ...]]:
    """_read_back of candidates' rank columns. With pgvector their cosines (and those of `also`,
    candidates read already) come in the same statement: one round trip to PostgreSQL where
    the read-back and the cosines took two."""
    if isinstance(semantic, pgvector.PgSemantic) and not semantic.exact:
        return semantic.read_back(where, params, ids, _RANK_COLUMNS, also=also or [])
    return _read_back(conn, where, params, ids, _RANK_COLUMNS)


def record_access(engine: Engine, _settings: Settings, scope: Scope, memory_ids: list[str]) -> None:
    """Returned memories count as accessed (ranking and decay read this), and the write gate's
    echo guard notes that this caller was shown them: both tallied in the process and written
    in batches, so a read never waits for the writer (core/memory/access.py)."""
    access.record(
        engine, scope.brain_id, memory_ids, principal=scope.principal, user_id=scope.user_id
    )


def list_filtered(
    conn: Connection, scope: Scope, filters: SearchFilters, *, limit: int, offset: int
) -> FilteredPageRecord:
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
