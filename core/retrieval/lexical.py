"""Full-text search: SQLite FTS5 with BM25, PostgreSQL tsvector with a GIN index.

Queries never reach the FTS syntax: they are cut into words, and each word goes in as a quoted
phrase (SQLite) or a bound lexeme (PostgreSQL), so quotes, operators and any Unicode are inert.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from core.embeddings.text import STOPWORDS, stem
from core.kernel.db.engine import sql, transaction, tuples
from core.kernel.db.id_lists import text_array

# Field weights: a hit in the title or key counts most, tags next, content last.
WEIGHTS = {"title": 4.0, "key": 4.0, "tags": 2.0, "content": 1.0}
_MAX_TERMS = 32
_WORD = re.compile(r"\w+", re.UNICODE)


def query_terms(query: str) -> list[str]:
    """Distinct lower-case words of the query, stopwords dropped (unless nothing else is left)."""
    normal = unicodedata.normalize("NFKC", query).casefold()
    words = list(dict.fromkeys(_WORD.findall(normal)))
    kept = [w for w in words if w not in STOPWORDS]
    return (kept or words)[:_MAX_TERMS]


def _tags_text(column: str) -> str:
    return f"(SELECT coalesce(group_concat(value, ' '), '') FROM json_each({column}))"


def scope_tokens(brain_id: str, user_id: str | None) -> list[str]:
    """Words that tie an FTS row to its brain and user; they never occur in real text."""
    tokens = ["b" + brain_id.replace("-", "")]
    if user_id is not None:
        tokens.append("u" + hashlib.sha256(user_id.encode()).hexdigest()[:24])
    return tokens


def index(
    conn: Connection,
    brain_id: str,
    memory_id: str,
    *,
    new: bool = False,
    located: tuple[int, str | None] | None = None,
) -> None:
    """(Re)index one memory; SQLite only: PostgreSQL keeps its generated column in step. A
    `new` memory has no row in the index yet, so there is nothing to delete first; `located`
    is its (rowid, user_id) when the caller already has them (the INSERT returned them)."""
    if conn.dialect.name != "sqlite":
        return
    if located is None:
        row = conn.execute(
            sql("SELECT rowid, user_id FROM memories WHERE brain_id = :brain AND id = :id"),
            {"brain": brain_id, "id": memory_id},
        ).one()
        located = (row.rowid, row.user_id)
    rowid, user_id = located
    if not new:
        conn.execute(sql("DELETE FROM memory_fts WHERE rowid = :rowid"), {"rowid": rowid})
    conn.execute(
        sql(
            "INSERT INTO memory_fts (rowid, title, key, tags, content, scope) "
            "SELECT rowid, coalesce(title, ''), coalesce(key, ''), "
            f"{_tags_text('tags')}, content, :scope FROM memories WHERE rowid = :rowid"
        ),
        {"rowid": rowid, "scope": " ".join(scope_tokens(brain_id, user_id))},
    )


def index_new(conn: Connection, brain_id: str, memories: Sequence[tuple[str, str | None]]) -> None:
    """Index many memories that have no row in the index yet, (id, user_id) each, in one
    executemany: what an import writes per batch. SQLite only, as `index`."""
    if conn.dialect.name != "sqlite" or not memories:
        return
    conn.execute(
        sql(
            "INSERT INTO memory_fts (rowid, title, key, tags, content, scope) "
            "SELECT rowid, coalesce(title, ''), coalesce(key, ''), "
            f"{_tags_text('tags')}, content, :scope FROM memories "
            "WHERE brain_id = :brain AND id = :id"
        ),
        [
            {"brain": brain_id, "id": memory_id, "scope": " ".join(scope_tokens(brain_id, user))}
            for memory_id, user in memories
        ],
    )


def unindex(conn: Connection, brain_id: str, memory_id: str) -> None:
    if conn.dialect.name != "sqlite":
        return
    conn.execute(
        sql(
            "DELETE FROM memory_fts WHERE rowid = "
            "(SELECT rowid FROM memories WHERE brain_id = :brain AND id = :id)"
        ),
        {"brain": brain_id, "id": memory_id},
    )


# Pages one merge step writes: a few hundred milliseconds, so each step's write transaction
# holds the store's writer lock no longer than an import batch does.
_MERGE_PAGES = 500


def merge_index(engine: Engine, *, budget_seconds: float) -> tuple[int, bool]:
    """(Steps run, whether done): the SQLite full-text index's segments merged towards one, in
    bounded steps, each its own write transaction, until it is done or the budget is spent;
    the next run goes on where this one stopped. Every add writes a segment, FTS5 merges them
    only in fours, and a lookup reads each segment's entries for every word: at 10,000
    memories, 7 segments merged into 1 in 54 ms, and the write gate's lookup then took 0.51
    ms instead of 0.66-0.70, finding the same rows (docs/benchmarks.md, write gate).
    PostgreSQL's GIN index needs nothing of the kind."""
    if engine.dialect.name != "sqlite":
        return 0, True
    started = time.monotonic()
    steps, done = 0, False
    # Negative first: segments of every level count as one level, so the merges that follow
    # end in a single segment (FTS5's 'merge'); positive after, to continue that same merge.
    pages = -_MERGE_PAGES
    while not done and time.monotonic() - started < budget_seconds:
        with transaction(engine) as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            if steps == 0:
                # FTS5 merges at least this many segments at once (4 by default): two are
                # worth merging too. Kept in the index's config, set again on every run.
                driver.execute("INSERT INTO memory_fts (memory_fts, rank) VALUES ('usermerge', 2)")
            before = driver.total_changes
            driver.execute(
                "INSERT INTO memory_fts (memory_fts, rank) VALUES ('merge', ?)", (pages,)
            )
            # Fewer than two rows changed: nothing was left to merge (FTS5's own test).
            done = driver.total_changes - before < 2
        steps += 1
        pages = _MERGE_PAGES
    return steps, done


# A word in more than this share of all memories says little (its IDF is near zero) and costs
# the most: BM25 is computed for every memory that contains it...
_COMMON = 0.1
# ...unless the scope is large enough that the word may be in less than this share of it. Its
# count over the index bounds its count in the scope: one user holding five LoCoMo
# conversations has each speaker's name in 11-15% of its memories, and the name is what tells
# the conversations apart (hit@10 0.703 with it dropped); with one user per conversation the
# name is in half of that scope and still dropped.
_COMMON_IN_SCOPE = 0.2
# The fast path ranks the best matches of the whole index, then keeps the scope's: it reads
# this many times the matches the scope's share of the index should yield...
_HEADROOM = 1.25
# ...and at most this many times `limit`; a scope smaller than that share of the index has
# its own share searched straight away (the fast path would come back short).
_POOL_AT_MOST = 4
_KEEP_AT_MOST = 8
_PRUNE_FROM = 2_000  # below this many indexed memories every word is cheap enough
_POSTINGS = 4_000  # at most this many (memory, word) matches are scored per search
# PostgreSQL, a lookup without a scope size (a write's): its words' matches scored, at most
# (about: counted from ANALYZE's commonest lexemes, the others count as none).
_LOOKUP_POSTINGS = 500


def _selective(conn: Connection, terms: list[str], total: int, in_scope: int | None) -> list[str]:
    """The query's most selective words (SQLite) in an index of `total` memories, `in_scope`
    of them the caller's: common words are dropped while rarer ones remain, so a search costs
    what its informative words cost, not what "said" costs."""
    if len(terms) <= 1 or total < _PRUNE_FROM:
        return terms
    stems = {t: stem(t) for t in terms}
    names = [f"v_{i}" for i in range(len(terms))]
    params = dict(zip(names, stems.values(), strict=True))
    found: dict[str, int] = dict(
        tuples(
            conn,
            "SELECT term, doc FROM memory_fts_vocab "
            f"WHERE term IN ({', '.join(':' + n for n in names)})",
            params,
        )
    )
    frequency = {t: int(found.get(stems[t], 0)) for t in terms}
    known = sorted((t for t in terms if frequency[t] > 0), key=lambda t: frequency[t])
    if not known:
        return terms
    # Rarest first, while the postings to score stay within budget: the cost of a search is
    # bounded by _POSTINGS whatever the size of the index, and the words left out are the
    # commonest, whose IDF is the smallest.
    chosen = [known[0]]
    postings = frequency[known[0]]
    common = max(_COMMON * total, _COMMON_IN_SCOPE * min(in_scope or 0, total))
    for term in known[1:_KEEP_AT_MOST]:
        if frequency[term] > common or postings + frequency[term] > _POSTINGS:
            break
        chosen.append(term)
        postings += frequency[term]
    return chosen


def _sqlite_candidates(
    conn: Connection,
    terms: list[str],
    where: list[str],
    params: dict[str, Any],
    limit: int,
    columns: str,
    in_scope: int | None,
    tenant: tuple[str, str | None],
) -> list[tuple[Any, ...]]:
    total = tuples(conn, "SELECT max(rowid) FROM memory_fts", {})[0][0] or 0
    terms = _selective(conn, terms, total, in_scope)
    words = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    weights = ", ".join(str(w) for w in WEIGHTS.values())
    pool = limit * _POOL_AT_MOST
    if in_scope and total:
        # No count (or none yet: the vector count after a model change) tries the widest pool.
        pool = math.ceil(limit * _HEADROOM / min(1.0, in_scope / total))
    if pool <= limit * _POOL_AT_MOST:
        # Fast path: FTS5 keeps only the best `pool` matches of the whole index while it
        # scores (no full sort), and the join applies tenant and filters. Enough survivors
        # mean those are the best of this scope too.
        fast = tuples(
            conn,
            # bm25() called in the ORDER BY, not configured through `rank MATCH`: the same
            # scores and order, a quarter less time (measured on the 10,000-memory bench).
            f"SELECT -f.rank, {columns} FROM (SELECT rowid, bm25(memory_fts, {weights}, 0.0) "
            "AS rank FROM memory_fts WHERE memory_fts MATCH :lex_query "
            "ORDER BY rank LIMIT :lex_pool) f JOIN memories m ON m.rowid = f.rowid "
            f"WHERE {' AND '.join(where)} ORDER BY f.rank LIMIT :lex_limit",
            {**params, "lex_query": words, "lex_pool": pool, "lex_limit": limit},
        )
        if len(fast) >= limit:
            return fast
        matched = tuples(
            conn,
            "SELECT count(*) FROM (SELECT 1 FROM memory_fts WHERE memory_fts MATCH :q LIMIT :pool)",
            {"q": words, "pool": pool + 1},
        )[0][0]
        if matched <= pool:
            return fast  # the pool held every match: nothing was left out
    # The tenant's own share of the index: its scope words narrow the match itself.
    scoped = " AND ".join(f'scope : "{t}"' for t in scope_tokens(*tenant))
    return tuples(
        conn,
        f"SELECT -bm25(memory_fts, {weights}, 0.0), {columns} FROM memory_fts "
        "JOIN memories m ON m.rowid = memory_fts.rowid "
        f"WHERE memory_fts MATCH :lex_query AND {' AND '.join(where)} "
        f"ORDER BY bm25(memory_fts, {weights}, 0.0) LIMIT :lex_limit",
        {**params, "lex_query": f"{scoped} AND ({words})", "lex_limit": limit},
    )


def candidates(
    conn: Connection,
    terms: list[str],
    where: list[str],
    params: dict[str, Any],
    limit: int,
    *,
    brain_id: str,
    user_id: str | None,
    columns: str = "m.id",
    in_scope: int | None = None,
) -> list[tuple[Any, ...]]:
    """(raw score, *columns) of the best `limit` matches, best first; higher is better.
    `where` filters the memories (alias m, which `columns` read from) and `params` carries its
    values; `brain_id` and `user_id` narrow the full-text match itself to the tenant, and
    `in_scope`, how many memories the scope holds, says which way that is cheapest."""
    if not terms:
        return []
    params = {**params, "lex_limit": limit}
    if conn.dialect.name == "sqlite":
        tenant = (brain_id, user_id)
        return _sqlite_candidates(conn, terms, where, params, limit, columns, in_scope, tenant)
    terms = _postgres_selective(conn, terms, in_scope)
    return _postgres_candidates(conn, terms, where, params, columns, in_scope)


@dataclass(frozen=True)
class _Vocabulary:
    """PostgreSQL's stand-in for FTS5's vocabulary table: the most common lexemes of
    memories.search_vector and the share of rows holding each, as ANALYZE (or autovacuum)
    last sampled them (pg_stats.most_common_elems: the 1,000 commonest at the default
    statistics target). A lexeme not listed is in fewer rows than the rarest listed."""

    share: dict[str, float]
    rows: float  # the table's rows when sampled

    def count(self, term: str) -> float:
        """About how many memories hold `term` (0 for a word not among the commonest). The
        index holds Snowball stems, the list is looked up by the Porter stem and by the word:
        the two stemmers agree on nearly every common word."""
        share = self.share.get(stem(term), self.share.get(term, 0.0))
        return share * self.rows


# The statistics change only as ANALYZE runs: read again after this long, once per process.
_VOCABULARY_SECONDS = 600.0
_vocabularies: dict[str, _Vocabulary | None] = {}
_vocabulary_read: dict[str, float] = {}
_vocabulary_lock = threading.Lock()


def _vocabulary(conn: Connection) -> _Vocabulary | None:
    """The engine's vocabulary statistics, None before the first ANALYZE (then no word is
    dropped and the write-time lookups take the longest words, as without statistics)."""
    key = conn.engine.url.render_as_string(hide_password=True)
    now = time.monotonic()
    if now < _vocabulary_read.get(key, -math.inf) + _VOCABULARY_SECONDS:
        return _vocabularies.get(key)
    row = tuples(
        conn,
        "SELECT c.reltuples, s.most_common_elems::text::text[], s.most_common_elem_freqs "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname "
        "AND s.attname = 'search_vector' WHERE c.oid = to_regclass('memories')",
        {},
    )
    found = None
    if row and row[0][1] is not None and row[0][0] and row[0][0] > 0:
        rows, lexemes, shares = row[0]
        # The shares list ends with three more figures (min, max, null share): zip drops them.
        found = _Vocabulary(dict(zip(lexemes, map(float, shares), strict=False)), float(rows))
    with _vocabulary_lock:
        _vocabularies[key] = found
        _vocabulary_read[key] = now
    return found


def forget_vocabulary() -> None:
    """Drop the memoised statistics (tests that ANALYZE behind the process's back)."""
    with _vocabulary_lock:
        _vocabularies.clear()
        _vocabulary_read.clear()


def _postgres_selective(conn: Connection, terms: list[str], in_scope: int | None) -> list[str]:
    """SQLite's rule (`_selective`) on PostgreSQL, with ANALYZE's commonest lexemes for the
    vocabulary table: rarest first, a word in more than _COMMON of all memories (or
    _COMMON_IN_SCOPE of a large scope) dropped, at most _POSTINGS matches scored, at most
    _KEEP_AT_MOST words. PostgreSQL scored every memory holding any query word, so a search
    cost what its commonest word cost ("great" is in a fifth of LoCoMo's turns)."""
    if len(terms) <= 1:
        return terms
    vocabulary = _vocabulary(conn)
    if vocabulary is None or vocabulary.rows < _PRUNE_FROM:
        return terms
    total = vocabulary.rows
    # A lookup that does not know its scope's size is a writer's (conflict detection's by
    # words, for its 8 nearest): its rarest words find what shares most of the text, so it
    # scores fewer matches than a search, which ranks the scope for the caller.
    budget = _POSTINGS if in_scope is not None else _LOOKUP_POSTINGS
    counts = {t: vocabulary.count(t) for t in terms}
    # Words not among the commonest cost little: first, the longest (rarer as a rule) first.
    ranked = sorted(terms, key=lambda t: (counts[t], -len(t)))
    chosen = [ranked[0]]
    postings = counts[ranked[0]]
    common = max(_COMMON * total, _COMMON_IN_SCOPE * min(in_scope or 0, total))
    for term in ranked[1:_KEEP_AT_MOST]:
        if counts[term] > common or postings + counts[term] > budget:
            break
        chosen.append(term)
        postings += counts[term]
    return [t for t in terms if t in chosen]  # the query's order: the statement's columns


def _rarest(conn: Connection, terms: list[str], k: int) -> list[str]:
    """The k rarest of `terms` by ANALYZE's commonest lexemes (the longest first among words
    not listed, and without statistics)."""
    vocabulary = _vocabulary(conn)
    counts = {t: vocabulary.count(t) if vocabulary else 0.0 for t in terms}
    return sorted(terms, key=lambda t: (counts[t], -len(t)))[:k]


# ts_rank's weights for the D, C, B and A classes of the generated search_vector (content is
# C, tags B, title and key A): the same proportions as WEIGHTS gives BM25 on SQLite.
_PG_WEIGHTS = "{{0.0, {}, {}, 1.0}}".format(
    WEIGHTS["content"] / WEIGHTS["title"],
    WEIGHTS["tags"] / WEIGHTS["title"],
)


# The statement's word columns: a query's words padded to the first of these that holds them.
_SLOTS = (4, _KEEP_AT_MOST)


def _one_lexeme(term: str) -> bool:
    return term.isascii() and term.isalnum()


def _slots(terms: list[str]) -> int:
    """How many word columns `_postgres_statement` has for `terms`: padded, unless a word may
    be more than one lexeme (it is then matched on its own, a column of its own kind) or there
    are more words than the padding holds (a small brain keeps every word)."""
    if not all(_one_lexeme(t) for t in terms):
        return len(terms)
    return next((s for s in _SLOTS if len(terms) <= s), len(terms))


def _postgres_candidates(
    conn: Connection,
    terms: list[str],
    where: list[str],
    params: dict[str, Any],
    columns: str,
    in_scope: int | None,
    *,
    late: str = "",
) -> list[tuple[Any, ...]]:
    """`_postgres_statement`'s rows."""
    return tuples(conn, *_postgres_statement(terms, where, params, columns, in_scope, late=late))


def _postgres_statement(
    terms: list[str],
    where: list[str],
    params: dict[str, Any],
    columns: str,
    in_scope: int | None,
    *,
    late: str = "",
    cosine: tuple[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The full-text statement and its parameters. BM25's shape on PostgreSQL, which has no
    BM25: each word's ts_rank (field weights, saturating term frequency, length normalisation)
    weighted by its IDF over the scope, the document frequencies counted from the matches
    themselves in the same statement. ts_rank alone has no IDF: "said" counted as much as
    "pottery" (LoCoMo hit@10 0.615 lexical).

    Each word is a bound value turned into lexemes by the same 'english' configuration the
    index uses; || ORs them, so no user text is parsed as tsquery syntax.

    The words take the first of `_slots` columns, the others bound NULL (no query, a rank of
    0): searches of 1 to 8 words then share one or two statement texts, which psycopg prepares
    and PostgreSQL plans once. One text per number of words was planned on nearly every
    search: 1-2 ms of a hybrid search at 10,000 memories."""
    slots = _slots(terms)
    names = [f"lex_{i}" for i in range(slots)]
    params = {**params, **dict(zip(names, [*terms, *[None] * (slots - len(terms))], strict=True))}
    params["lex_weights"] = _PG_WEIGHTS
    params["lex_scope"] = in_scope or 0
    words = ", ".join(f"plainto_tsquery('english', :{n}) AS q{i}" for i, n in enumerate(names))
    # Any of the words: the longest run of them that is not NULL (the padding is last).
    runs = [" || ".join(f"w.q{i}" for i in range(k)) for k in range(slots, 0, -1)]
    either = f"coalesce({', '.join(runs)})"
    # A memory counts towards a word's document frequency when it matches the word. For a
    # word that is one lexeme that is when its ts_rank is above 0 (no field has weight 0); a
    # word the parser cuts in two ("foo_bar") ranks a memory holding one of them above 0, so
    # it is matched (@@) on its own: a second test per match, a third of the statement's time.
    matches = [
        f"r{i} > 0" if i >= len(terms) or _one_lexeme(terms[i]) else f"has{i}" for i in range(slots)
    ]
    ranks = ", ".join(
        f"coalesce(ts_rank(CAST(:lex_weights AS real[]), m.search_vector, w.q{i}, 1), 0) AS r{i}"
        + ("" if matches[i].startswith("r") else f", m.search_vector @@ w.q{i} AS has{i}")
        for i in range(slots)
    )
    # Document frequencies from one aggregate over the matches, both kept (MATERIALIZED) so
    # that each is computed once: window aggregates over every match did the same at twice the
    # cost, and the aggregate inlined was re-run per match by a planner that expected one row
    # (before ANALYZE: 120 ms a gate lookup at 800 memories sharing their words, 3 ms kept).
    frequencies = ", ".join(
        f"count(*) FILTER (WHERE {matched}) AS d{i}" for i, matched in enumerate(matches)
    )
    # FTS5's IDF: ln((N - n + 0.5) / (n + 0.5)), at least 1e-6; N is the scope's size (never
    # below the matches: the vector count the caller passes can miss unembedded memories).
    # Computed once per statement, not per match (a tenth of the statement's time).
    half = "CAST(0.5 AS float8)"  # float arithmetic: a bare 0.5 is numeric, and slow
    idfs = ", ".join(
        f"greatest(ln((greatest(:lex_scope, matched) - d{i} + {half}) / (d{i} + {half})), 1e-6)"
        f" AS i{i}"
        for i in range(slots)
    )
    score = " + ".join(f"r{i} * i{i}" for i in range(slots))
    # The words' queries are kept (MATERIALIZED) too. Inlined, they are constants only in a
    # plan made for the values bound; psycopg prepares a statement it has run five times, and
    # PostgreSQL's generic plan for it then parsed and stemmed each word again for every
    # ts_rank, per match: 12.6 ms where the plan for the values took 4.9 (10,000 memories).
    # `cosine`: (a join, an expression) adding the cosine of each row returned (search_read).
    cosine_join, with_cosine = (f"{cosine[0]} ", f", {cosine[1]}") if cosine else ("", "")
    # The matches are kept narrow (the id and the ranks), the columns read for the best only.
    statement = (
        f"WITH w AS MATERIALIZED (SELECT {words}), "
        f"h AS MATERIALIZED (SELECT m.id, {ranks} FROM memories m, w "
        f"WHERE m.search_vector @@ ({either}) AND {' AND '.join(where)}), "
        f"f AS MATERIALIZED (SELECT {idfs} FROM "
        f"(SELECT count(*) AS matched, {frequencies} FROM h) AS d), "
        f"s AS (SELECT h.id, {score} AS score FROM h, f "
        "ORDER BY score DESC, h.id LIMIT :lex_limit) "
        f"SELECT s.score AS score, {columns}{with_cosine} FROM s JOIN memories m ON m.id = s.id "
        f"{cosine_join}ORDER BY s.score DESC, s.id"
    )
    if late:
        # `late` (over the rows as x) for the rows returned only, in the same round trip.
        statement = f"SELECT x.*, {late} FROM ({statement}) AS x ORDER BY x.score DESC, x.id"
    return statement, params


@dataclass
class SearchRead:
    """What search's full-text statement read on PostgreSQL (`search_read`)."""

    rows: list[tuple[Any, ...]]  # (raw score, *columns) of the best matches, best first
    cosines: list[tuple[str, float | None]]  # (id, cosine) of each, when asked
    held: set[str]  # the words asked about that the brain's memories hold
    nearest: list[tuple[Any, ...]]  # the rows of the `nearest` statement, as it read them


def search_read(
    conn: Connection,
    terms: list[str],
    where: list[str],
    params: dict[str, Any],
    limit: int,
    *,
    brain_id: str,
    columns: str,
    in_scope: int | None,
    asked: list[str],
    cosine: tuple[str, str] | None = None,
    nearest: str = "",
) -> SearchRead:
    """PostgreSQL: `candidates` of `terms`, which of `asked` (words) the brain's memories hold,
    the candidates' cosines (`cosine`: a join and an expression over memories as m) and the
    rows of another read (`nearest`: a SELECT of `columns`, a cosine and a count), in one
    statement, each a round trip of its own before. Search's near words ask which words are
    held first (core/retrieval/near_words.py): when the brain holds every word asked, these are
    the search's candidates."""
    chosen = _postgres_selective(conn, terms, in_scope) if terms else []
    width = len(columns.split(","))
    parts = []
    params = {**params, "lex_limit": limit}
    if chosen:
        statement, params = _postgres_statement(
            chosen, where, params, columns, in_scope, cosine=cosine
        )
        # kind, score, *columns, cosine, count, held: typed here, where the union takes them.
        nulls = "" if cosine else ", CAST(NULL AS float8)"
        parts.append(
            f"(SELECT 0, x.*{nulls}, CAST(NULL AS bigint), CAST(NULL AS text[]) "
            f"FROM ({statement}) AS x ORDER BY x.score DESC, x.id)"
        )
    if asked:
        parts.append(
            f"SELECT 1, {', '.join(['NULL'] * (width + 3))}, ARRAY(SELECT c.w "
            "FROM unnest(CAST(:held_words AS text[])) AS c(w) WHERE EXISTS (SELECT 1 "
            "FROM memories hm WHERE hm.brain_id = :held_brain "
            "AND hm.search_vector @@ plainto_tsquery('english', c.w)))"
        )
        params["held_words"], params["held_brain"] = text_array(asked), brain_id
    if nearest:
        parts.append(f"(SELECT 2, NULL, y.*, NULL FROM ({nearest}) AS y)")
    if not parts:
        return SearchRead([], [], set(), [])
    found = tuples(conn, " UNION ALL ".join(parts), params)
    rows = [tuple(row[1 : width + 2]) for row in found if row[0] == 0]
    cosines = [(row[2], row[width + 2]) for row in found if row[0] == 0] if cosine else []
    held = next((set(row[-1] or ()) for row in found if row[0] == 1), set())
    near = [tuple(row[2:-1]) for row in found if row[0] == 2]
    return SearchRead(rows, cosines, held, near)


def rare_word_candidates(
    conn: Connection,
    terms: list[str],
    where: list[str],
    params: dict[str, Any],
    limit: int,
    *,
    words: int,
    columns: str = "m.id",
    late: str = "",
) -> list[tuple[Any, ...]]:
    """PostgreSQL: (raw score, *columns[, late]) of the best matches of the `words` rarest of
    `terms` by ANALYZE's commonest lexemes, best first (the write gate's lookup,
    core/retrieval/restatements.py). Ranking every word of a text scored every memory holding
    any of them: 30-50 ms an add at 10,000 memories; the four longest, a speaker's name among
    them, still matched a tenth of the brain. `late` is read for the rows returned only."""
    rarest = _rarest(conn, terms, words)
    return _postgres_candidates(
        conn, rarest, where, {**params, "lex_limit": limit}, columns, None, late=late
    )
