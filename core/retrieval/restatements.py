"""The write gate's near-duplicate lookup: the owner's memories that may restate a new text.

A restatement shares most of its words with what it restates, so the new text's rarest words
are enough to find it, at a cost that follows how rare they are, not how many memories the
owner has (core/memory/gate.py compares what this returns; core/retrieval/indexing.py adds the
vectors' cosines).

On SQLite the lookup reads the posting lists (matching rowids) of the rarest words, capped, and
scores the rows in Python: the IDF of the words each row holds, the newest first among equals;
the best rows are looked up first, so a one-owner store reads a few rows. BM25 in the index
scored every match of the words (2 microseconds each, 0.3-0.4 ms a write at 10,000 memories)
to rank rows that differ by which of four words they hold. Which words are rarest comes from
their capped counts, remembered per process (`COUNTS`): counting every word of the text cost
20 microseconds a word, most of a write's lookup; the posting lists are read fresh, with the
counts of the words read. Once four of the text's words are remembered as rare, only theirs
are read: a restatement holds them too (the gate asks for most of the words and no word
replaced), so the words never counted need not be. When the rarest words are all common (no
complete posting list under the cap), BM25 in the index ranks them, as before.

On PostgreSQL the rarest words come from ANALYZE's commonest lexemes, ranked as
`lexical.candidates` ranks (`lexical.rare_word_candidates`).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
import weakref
from operator import itemgetter
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

from core.embeddings.text import stem
from core.kernel.db.engine import tuples
from core.retrieval.lexical import WEIGHTS, query_terms, rare_word_candidates, scope_tokens

# Each word more costs a pass over its postings; four of a restatement's words find it.
_RESTATEMENT_WORDS = 4
# Rows ranked before the owner's are kept: 16 per candidate for the gate's 3, and the same
# pool when the contradiction check shares the search and asks for 8.
_RESTATEMENT_POOL = 16
_RESTATEMENT_BASE = 3
_POOL = _RESTATEMENT_POOL * _RESTATEMENT_BASE
# A word in more rows than this is common, whatever its exact count: twice the pool, so the
# rarest words are told apart even when the owner's share has to be matched on its own.
_COUNT_CAP = 2 * _POOL + 1
# An owner with fewer memories than this has her rowids read with the postings, so only her
# rows are looked up; a larger one's rows are looked up among the others' (a page each).
_OWNER_CAP = 256


K = TypeVar("K")
V = TypeVar("V")


class _Remembered(Generic[K, V]):
    """Values remembered per process for `_TTL` seconds, at most `_MAX` of them (all are
    dropped when full: they only choose what to read, never what is found)."""

    _TTL = 600.0
    _MAX = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[K, tuple[V, float]] = {}

    def get(self, key: K) -> V | None:
        found = self._known.get(key)
        if found is None or found[1] < time.monotonic() - self._TTL:
            return None
        return found[0]

    def put(self, items: dict[K, V | None]) -> None:
        """Remember each value; a None forgets its key."""
        now = time.monotonic()
        with self._lock:
            if len(self._known) + len(items) > self._MAX:
                self._known.clear()
            for key, value in items.items():
                if value is None:
                    self._known.pop(key, None)
                else:
                    self._known[key] = (value, now)

    def clear(self) -> None:
        with self._lock:
            self._known.clear()


# Capped row counts of words in a store's full-text index, by (store, word). They only choose
# which words' posting lists are read, and every read refreshes the counts of the words it
# chose, so a word that became common is seen at its next use. A word never seen (or last
# seen in no row) is counted whenever fewer than four of the text's words are remembered as
# rare: a memory holding it may have been added since, and it may be the only rare word a
# restatement shares. Entries expire, so a word made rare by deletions is not passed over for
# long.
COUNTS: _Remembered[tuple[str, str], int] = _Remembered()
# Owners seen with `_OWNER_CAP` memories or more, by (store, brain, user): reading their
# rowids with the postings only to find too many costs 36 microseconds a write (one owner of
# 10,000), and owners seldom shrink.
LARGE_OWNERS: _Remembered[tuple[str, str, str | None], bool] = _Remembered()


def _remember(store: str, counts: dict[str, int]) -> None:
    """Keep the counts read; a word in no row is forgotten (counted again when next met)."""
    COUNTS.put({(store, word): n or None for word, n in counts.items()})


def forget() -> None:
    """Forget what this process remembers of every store (tests start from nothing)."""
    COUNTS.clear()
    LARGE_OWNERS.clear()


_STORES: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def _store(engine: Engine) -> str:
    """The store an engine writes to, as `COUNTS` knows it (its URL: rendering one costs
    about 10 microseconds a write)."""
    found = _STORES.get(engine)
    if found is None:
        found = _STORES[engine] = str(engine.url)
    return found


def restatement_candidates(
    conn: Connection,
    text: str,
    where: list[str],
    params: dict[str, Any],
    limit: int,
    *,
    brain_id: str,
    user_id: str | None,
    columns: str = "m.id",
    late: str = "",
) -> list[tuple[Any, ...]]:
    """(score, *columns[, late]) of the owner's memories sharing the most of `text`'s rarest
    words, best first (the score orders them, higher better; its scale is the method's).
    `where` filters the memories (alias m, which `columns` read from) with `params`; `late`
    is a column read for the rows returned only, over the others as x: a join would
    read it (vectors: 1-2 KB each) for every row scored."""
    terms = query_terms(text)
    if not terms:
        return []
    if conn.dialect.name != "sqlite":
        return rare_word_candidates(
            conn, terms, where, params, limit, words=_RESTATEMENT_WORDS, columns=columns, late=late
        )
    stems = list(dict.fromkeys(stem(t) for t in terms))
    store = _store(conn.engine)
    remembered = {t: n for t in stems if (n := COUNTS.get((store, t))) is not None}
    by_count = sorted(remembered, key=remembered.__getitem__)
    rare = [t for t in by_count if remembered[t] < _COUNT_CAP][:_RESTATEMENT_WORDS]
    known_large = LARGE_OWNERS.get((store, brain_id, user_id)) is not None
    owner = None if known_large else (brain_id, user_id)
    counts: dict[str, int] = {}
    if len(rare) == _RESTATEMENT_WORDS:
        # A restatement holds the text's words, or most of them (the gate asks for a share
        # and no word replaced): four remembered rare ones find it as the four rarest would,
        # with the shortest postings known. Words never counted are left unread: each costs
        # an FTS5 seek per segment (35-50 microseconds), most of what the gate adds a write.
        read = rare
        counts, postings, total, owned = _postings(conn, read, owner)
        _remember(store, counts)
        if not all(0 < counts[t] < _COUNT_CAP for t in read):
            counts = {}  # a word grew common or left every memory since: count them all
    if not counts:
        # One pass reads the postings of the words not remembered (counting them) and of the
        # rarest remembered ones: whichever turn out rarest, their postings are at hand.
        read = [t for t in stems if t not in remembered] + by_count[:_RESTATEMENT_WORDS]
        counts, postings, total, owned = _postings(conn, read, owner)
        _remember(store, counts)
    if owned is None and not known_large:
        LARGE_OWNERS.put({(store, brain_id, user_id): True})
    rarest = sorted((t for t in read if counts[t]), key=counts.__getitem__)
    rarest = rarest[:_RESTATEMENT_WORDS]
    if not rarest:
        return []  # no word of it is in any memory: nothing can restate it
    if any(counts[t] >= _COUNT_CAP for t in rarest):
        # A common word's postings were cut at the cap: rank the whole match in the index.
        matches = sum(counts[t] for t in rarest)
        token = scope_tokens(brain_id, user_id)[-1]
        return _ranked(conn, rarest, where, params, limit, columns, matches, token, late)
    return _scored(
        conn, rarest, counts, postings, total, where, params, limit, columns, late, owned=owned
    )


def _postings(
    conn: Connection, words: list[str], owner: tuple[str, str | None] | None
) -> tuple[dict[str, int], dict[str, list[str]], int, frozenset[str] | None]:
    """Each word's rows in the index (rowids, at most _COUNT_CAP: more is common, never among
    the rarest while rarer words exist), their count, the index's highest rowid (its size,
    near enough, for an IDF), and the `owner`'s rowids (None: she has `_OWNER_CAP` or more,
    or no owner was given), read from the brain-and-user index, a few entries a page: one
    statement for all."""
    names = [f"c_{i}" for i in range(len(words))]
    parts = [
        f"SELECT {i}, count(*), group_concat(rowid) FROM (SELECT rowid FROM memory_fts "
        f"WHERE memory_fts MATCH :{n} LIMIT {_COUNT_CAP})"
        for i, n in enumerate(names)
    ]
    parts.append("SELECT -1, (SELECT max(rowid) FROM memory_fts), NULL")
    params: dict[str, Any] = {
        n: '"' + w.replace('"', '""') + '"' for n, w in zip(names, words, strict=True)
    }
    if owner is not None:
        brain_id, user_id = owner
        parts.append(
            "SELECT -2, count(*), group_concat(rowid) FROM (SELECT rowid FROM memories "
            "WHERE brain_id = :o_brain AND "
            + ("user_id IS NULL" if user_id is None else "user_id = :o_user")
            + f" LIMIT {_OWNER_CAP})"
        )
        params.update(o_brain=brain_id, o_user=user_id)
    statement = " UNION ALL ".join(parts)
    counts = dict.fromkeys(words, 0)
    postings: dict[str, list[str]] = {}
    total = 0
    owned: frozenset[str] | None = None
    for i, n, rowids in tuples(conn, statement, params):
        if int(i) == -1:
            total = int(n or 0)
        elif int(i) == -2:
            if int(n) < _OWNER_CAP:
                owned = frozenset(str(rowids).split(",")) if rowids else frozenset()
        else:
            word = words[int(i)]
            counts[word] = int(n)
            if rowids:
                postings[word] = str(rowids).split(",")
    return counts, postings, total, owned


def _scored(
    conn: Connection,
    rarest: list[str],
    counts: dict[str, int],
    postings: dict[str, list[str]],
    total: int,
    where: list[str],
    params: dict[str, Any],
    limit: int,
    columns: str,
    late: str,
    *,
    owned: frozenset[str] | None,
) -> list[tuple[Any, ...]]:
    """The owner's best rows among complete posting lists: a row's score is the IDF (BM25's)
    of the rarest words it holds, the newest first among equals. The best `limit` rows are
    looked up first, then, when too few pass `where`, the rest: every match is reachable, so
    no restatement of the owner's hides behind other owners' rows. `owned` are the owner's
    rowids (the one `where` asks for) when she has few: only hers are scored and looked up.
    Looking a row up costs a page read (0.2 ms for 170 rows), and the lookup's WHERE asks
    for the owner anyway, so the rows found, and their order, are the same."""
    size = max(total, max(counts[t] for t in rarest))
    score: dict[str, float] = {}
    for word in rarest:
        n = counts[word]
        idf = math.log(1.0 + (size - n + 0.5) / (n + 0.5))
        if not score:  # the first word's rows all score its IDF (a word lists a row once)
            score = dict.fromkeys(postings.get(word, ()), idf)
            continue
        get = score.get
        for rowid in postings.get(word, ()):
            score[rowid] = get(rowid, 0.0) + idf
    if owned is not None:
        score = {rowid: value for rowid, value in score.items() if rowid in owned}
    if not score:
        return []
    # The best `limit` rows as a full sort would rank them (nlargest keeps its order among
    # equals); the whole ranking only when they are not enough.
    best = heapq.nlargest(limit, score.items(), key=itemgetter(1))
    statement = (
        f"SELECT -r.value, {columns} FROM json_each(:lex_rows) r "
        # CROSS JOIN keeps the rows listed as the outer loop: the planner, left alone, may
        # walk the brain's index of memories instead of looking each row up by its rowid.
        "CROSS JOIN memories m ON m.rowid = CAST(r.key AS INTEGER) "
        f"WHERE {' AND '.join(where)} ORDER BY r.value, m.rowid DESC LIMIT :lex_limit"
    )
    if late:
        statement = f"SELECT x.*, {late} FROM ({statement}) x"
    # The best `limit` rows first: when they pass (the owner's rows, or a one-owner store's,
    # or a restatement, which holds all the rarest words), no other row is read.
    found = tuples(conn, statement, {**params, "lex_rows": _tiers(best), "lex_limit": limit})
    if len(found) < limit and len(score) > limit:
        rest = sorted(score.items(), key=itemgetter(1), reverse=True)[limit:]
        found += tuples(
            conn, statement, {**params, "lex_rows": _tiers(rest), "lex_limit": limit - len(found)}
        )
    return found


def _tiers(ranked: list[tuple[str, float]]) -> str:
    """The rows, best first, as a JSON object of rowid: tier, the rows of the best score
    first (small integers: a float per row made the JSON cost more than the lookup)."""
    rows: list[str] = []
    tier, last = 0, math.inf
    for rowid, value in ranked:
        if value != last:
            tier, last = tier + 1, value
        rows.append(f'"{rowid}":{tier}')
    return "{" + ",".join(rows) + "}"


def _ranked(
    conn: Connection,
    words_: list[str],
    where: list[str],
    params: dict[str, Any],
    limit: int,
    columns: str,
    matches: int,
    owner: str,
    late: str = "",
) -> list[tuple[Any, ...]]:
    """BM25 in the index, for rarest words that are all common. Rare words match few
    memories: rank those in the index, then keep the owner's. Only when other owners fill the
    pool is the owner's share matched on its scope word, which costs a pass over the owner's
    postings."""
    words = " OR ".join('"' + t.replace('"', '""') + '"' for t in words_)
    weights = ", ".join(str(w) for w in WEIGHTS.values())
    pool = max(limit, _POOL)
    ranked = (
        f"SELECT -f.rank, {columns} FROM (SELECT rowid, bm25(memory_fts, {weights}, 0.0) AS "
        "rank FROM memory_fts WHERE memory_fts MATCH :lex_query ORDER BY rank LIMIT :lex_pool) "
        f"f JOIN memories m ON m.rowid = f.rowid WHERE {' AND '.join(where)} "
        "ORDER BY f.rank LIMIT :lex_limit"
    )
    if late:
        ranked = f"SELECT x.*, {late} FROM ({ranked}) x"
    found = tuples(
        conn, ranked, {**params, "lex_query": words, "lex_pool": pool, "lex_limit": limit}
    )
    if found or matches <= pool:
        return found
    scoped = f'scope : "{owner}" AND ({words})'
    return tuples(
        conn, ranked, {**params, "lex_query": scoped, "lex_pool": pool, "lex_limit": limit}
    )
