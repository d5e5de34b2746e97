"""Vector search inside PostgreSQL with the pgvector extension (HNSW), when it is there.

`memory_vectors` stays the source of truth (float32 bytes, model, dims) so SQLite and the numpy
path work everywhere. With pgvector usable, `memory_vectors_pgv` holds a copy of each vector as
a pgvector `vector`, written in the same transaction as `memory_vectors` (core/retrieval/vectors.py
calls `mirror`) and removed with it (its foreign key cascades from `memory_vectors`, which
cascades from `memories`: purges and brain clears follow). One partial HNSW index per (model,
dims) serves the nearest-neighbour query; inner product (`<#>`, vector_ip_ops) because the numpy
path scores by the dot product too (the embedders' vectors are unit length, so it is the cosine).

Why this DDL lives here and not in core/kernel/db/migrations.py: the `vector` type exists only where
the extension does, and installing it may need a superuser, so it cannot be part of a schema
every database (SQLite, PostgreSQL without pgvector) must reach. It is created at runtime, once,
when MNEMO_PGVECTOR=auto finds the extension installed or installable; a database without it
keeps the numpy path and one log line says why.

Ranking standardises cosines over the whole scope (core/retrieval/ranking.py). HNSW shows only the
nearest, so the mean and spread come from a fixed random sample: each copied vector gets a
uniform `sample_rank`, and the scope's first `SAMPLE_SIZE` vectors by that rank are a uniform
sample of it (and the rank of the last one estimates the scope's size). A scope smaller than the
sample is read whole: its statistics and nearest memories are then exact, as on the numpy path.
A larger scope's sample is kept in the process a while (`_SampleCache`): reading it was most of
a search's time in the database (a 1,000-row index scan joined to `memories` for the user and
state), and a uniform sample a minute old estimates the scope's spread as well as a fresh one.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, cast

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError

from core.kernel.db.engine import tuples
from core.kernel.db.id_lists import text_array

if TYPE_CHECKING:
    # numpy is imported where used: every PostgreSQL request's first step calls `ensure`, and
    # a cold start should not pay for numpy before its request needs it (handlers/lazy.py).
    import numpy as np

    from core.retrieval.ranking import Standardiser

log = logging.getLogger("mnemo.search")

TABLE = "memory_vectors_pgv"
# 1,000 cosines estimate the scope's mean and spread to within a few percent; reading them is
# one short index range scan.
SAMPLE_SIZE = 1000
# Arbitrary, fixed: the advisory lock that serialises creating the copy and its indexes.
_LOCK_KEY = 0x6D6E7076
# An index over this many vectors builds in a few seconds (4 s for 10,000 on a busy 2-vCPU
# machine): fine within a request. Larger ones are built by `mnemo migrate`.
INLINE_BUILD_ROWS = 20_000
# A negative answer is asked again after this long: another process may have created the copy.
_RECHECK_SECONDS = 60.0


@dataclass
class _Engine:
    active: bool
    iterative_scan: bool = False  # pgvector >= 0.8 keeps scanning past filtered-out rows
    indexes: set[tuple[str, int]] = field(default_factory=set)
    missing: dict[tuple[str, int], float] = field(default_factory=dict)  # too big to build inline


_engines: dict[str, _Engine] = {}
_copy_exists: dict[str, tuple[bool, float]] = {}
_lock = threading.Lock()


def _key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def ensure(engine: Engine, mode: str) -> bool:
    """Whether searches on this engine use pgvector (memoised): creates the extension, the copy
    and backfills it the first time, when `mode` is auto and the database allows it."""
    if mode == "off" or engine.dialect.name != "postgresql":
        return False
    key = _key(engine)
    state = _engines.get(key)
    if state is None:
        with _lock:
            state = _engines.get(key)
            if state is None:
                state = _engines[key] = _prepare(engine)
    return state.active


def _prepare(engine: Engine) -> _Engine:
    try:
        with engine.connect() as conn:
            version, table = _probe(conn)
        if version is None or not table:
            with engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
                created = _create_copy(conn)
                version, table = _probe(conn)
            if created:
                log.info("pgvector: vector search copy created (%d vectors copied)", created)
    except DBAPIError as error:  # no extension to install, or no right to install it
        log.info("pgvector not usable, vector search stays on numpy: %s", str(error)[:200])
        return _Engine(active=False)
    _copy_exists[_key(engine)] = (True, time.monotonic())
    major, minor = (int(p) for p in str(version).split(".")[:2])
    return _Engine(active=True, iterative_scan=(major, minor) >= (0, 8))


def _probe(conn: Connection) -> tuple[str | None, bool]:
    row = conn.execute(
        text(
            "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector'), "
            f"to_regclass('{TABLE}') IS NOT NULL"
        )
    ).one()
    return row[0], bool(row[1])


def _create_copy(conn: Connection) -> int:
    """The copy table and its sample index, filled from memory_vectors; returns rows copied."""
    exists = conn.execute(text(f"SELECT to_regclass('{TABLE}') IS NOT NULL")).scalar()
    if exists:
        return 0
    conn.execute(
        text(
            f"CREATE TABLE {TABLE} ("
            "memory_id TEXT NOT NULL PRIMARY KEY "
            "REFERENCES memory_vectors (memory_id) ON DELETE CASCADE, "
            "brain_id TEXT NOT NULL, model TEXT NOT NULL, dims INTEGER NOT NULL, "
            "embedding vector NOT NULL, "
            "sample_rank REAL NOT NULL DEFAULT random())"
        )
    )
    conn.execute(
        text(f"CREATE INDEX ix_{TABLE}_sample ON {TABLE} (brain_id, model, dims, sample_rank)")
    )
    import numpy as np

    copied, after = 0, ""
    while True:  # in pages by id, so a large table is never held in memory at once
        batch = conn.execute(
            text(
                "SELECT memory_id, brain_id, model, vector FROM memory_vectors "
                "WHERE memory_id > :after ORDER BY memory_id LIMIT 1000"
            ),
            {"after": after},
        ).all()
        if not batch:
            break
        _insert(conn, [(r[0], r[1], r[2], np.frombuffer(r[3], np.float32)) for r in batch])
        copied += len(batch)
        after = batch[-1][0]
    if copied:
        # Plans over a table without statistics can be ruinous (a nested loop over every
        # memory of the brain per sampled row) until autovacuum gets to it.
        conn.execute(text(f"ANALYZE {TABLE}"))
    return copied


def literal(vector: np.ndarray) -> str:
    """pgvector's text form. Nine significant digits read back as the very same float32 (the
    shortest width that always does); repr printed the float64 each became, up to 17 digits,
    at 154 us for 256 dims where one %-format of them all takes 58."""
    import numpy as np

    values = np.asarray(vector, np.float32).tolist()
    return _format(len(values)) % tuple(values)


@lru_cache(maxsize=16)
def _format(dims: int) -> str:
    return "[" + ",".join(["%.9g"] * dims) + "]"


_COPY_COLUMNS = "memory_id, brain_id, model, dims, embedding, sample_rank"
_COPY_UPDATE = (
    "ON CONFLICT (memory_id) DO UPDATE SET brain_id = excluded.brain_id, "
    "model = excluded.model, dims = excluded.dims, embedding = excluded.embedding"
)


def _insert(conn: Connection, rows: Sequence[tuple[str, str, str, np.ndarray]]) -> None:
    # The sample rank is drawn here rather than by the database's random(): the writer then
    # knows whether a new vector entered a sample this process keeps (`_SampleCache.entered`).
    # An update keeps the rank the vector had.
    params = [
        {
            "id": memory_id,
            "brain": brain_id,
            "model": model,
            "dims": int(vector.shape[0]),
            "embedding": literal(vector),
            "rank": random.random(),  # a statistical sample, not a secret
        }
        for memory_id, brain_id, model, vector in rows
    ]
    conn.execute(
        text(
            f"INSERT INTO {TABLE} ({_COPY_COLUMNS}) "
            f"VALUES (:id, :brain, :model, :dims, CAST(:embedding AS vector), :rank) {_COPY_UPDATE}"
        ),
        params,
    )
    _entered(conn, params)


def mirroring(conn: Connection) -> bool:
    """Whether this database has the copy, which every writer of memory_vectors then keeps in
    step, whatever MNEMO_PGVECTOR says (so switching it back on needs no rebuild)."""
    if conn.dialect.name != "postgresql":
        return False
    key = _key(conn.engine)
    known = _copy_exists.get(key)
    if known is not None and (known[0] or time.monotonic() - known[1] < _RECHECK_SECONDS):
        return known[0]
    exists = bool(conn.execute(text(f"SELECT to_regclass('{TABLE}') IS NOT NULL")).scalar())
    _copy_exists[key] = (exists, time.monotonic())
    return exists


def store_with_copy(
    conn: Connection,
    upsert: str,
    rows: list[dict[str, object]],
    items: Sequence[tuple[str, np.ndarray]],
) -> None:
    """memory_vectors' `upsert` (an INSERT of rows id, brain, model, dims, ...) and the copy of
    each vector, `items` (memory id, vector) in the same order, in one statement: the upsert
    as a data-modifying WITH, the copy inserted from what it returns (its foreign key to
    memory_vectors is checked at the end of the statement, when the row is there)."""
    params = [
        {**row, "embedding": literal(vector), "rank": random.random()}
        for row, (_, vector) in zip(rows, items, strict=True)
    ]
    conn.execute(
        text(
            f"WITH v AS ({upsert} RETURNING memory_id) INSERT INTO {TABLE} ({_COPY_COLUMNS}) "
            "SELECT v.memory_id, :brain, :model, :dims, CAST(:embedding AS vector), :rank "
            f"FROM v {_COPY_UPDATE}"
        ),
        params,
    )
    _entered(conn, params)


def _entered(conn: Connection, params: Sequence[dict[str, object]]) -> None:
    engine = _key(conn.engine)
    for row in params:
        brain, model = str(row["brain"]), str(row["model"])
        _samples.entered(engine, brain, model, cast(int, row["dims"]), cast(float, row["rank"]))


def mirror(
    conn: Connection, brain_id: str, model: str, items: Sequence[tuple[str, np.ndarray]]
) -> None:
    """Copy vectors just written to memory_vectors, in the same transaction."""
    if items and mirroring(conn):
        _insert(conn, [(memory_id, brain_id, model, v) for memory_id, v in items])


def forget() -> None:
    """Drop the memos (tests that change the database behind the process's back)."""
    with _lock:
        _engines.clear()
        _copy_exists.clear()
        _large.clear()
    _samples.clear()


# -- search -------------------------------------------------------------------------------


def _quote(value: str) -> str:
    # For text(): a ':name' inside the literal would otherwise be taken for a bind parameter.
    return "'" + value.replace("'", "''").replace(":", "\\:") + "'"


def _index_name(model: str, dims: int) -> str:
    return f"ix_{TABLE}_hnsw_" + hashlib.sha256(f"{model}|{dims}".encode()).hexdigest()[:12]


def _predicate(model: str, dims: int, alias: str = "") -> str:
    # Literals, not parameters: a partial index serves only queries whose WHERE visibly implies
    # its predicate, which a generic plan over bound parameters does not.
    return f"{alias}model = {_quote(model)} AND {alias}dims = {int(dims)}"


def _ensure_index(engine: Engine, model: str, dims: int) -> None:
    """The model's HNSW index, built here if the copy is small enough to build it within a
    request; a larger one is built by `mnemo migrate` (`build_indexes`), and until then the
    nearest-neighbour query is an exact sort over the brain's vectors: slower, still right."""
    state = _engines[_key(engine)]
    if (model, dims) in state.indexes:
        return
    waited = state.missing.get((model, dims))
    if waited is not None and time.monotonic() - waited < _RECHECK_SECONDS:
        return
    with _lock, engine.begin() as conn:
        if _has_index(conn, model, dims):
            state.indexes.add((model, dims))
            return
        rows = conn.execute(
            text(
                f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} WHERE {_predicate(model, dims)} "
                f"LIMIT {INLINE_BUILD_ROWS + 1}) AS s"
            )
        ).scalar_one()
        if rows > INLINE_BUILD_ROWS:
            if waited is None:
                log.warning(
                    "pgvector: no HNSW index for %s (%d dims) yet; vector search sorts exactly "
                    "until `mnemo migrate` builds it",
                    model,
                    dims,
                )
            state.missing[(model, dims)] = time.monotonic()
            return
        _build(conn, model, dims)
    state.indexes.add((model, dims))
    state.missing.pop((model, dims), None)


def build_indexes(engine: Engine, report: Callable[[str], None] = log.info) -> int:
    """Build the HNSW index of every (model, dims) in the copy that has none (`mnemo migrate`,
    which has no request deadline). Returns how many were built."""
    built = 0
    with engine.begin() as conn:
        pairs = conn.execute(
            text(f"SELECT DISTINCT model, dims FROM {TABLE}")  # once, at deploy time
        ).all()
    for model, dims in pairs:
        with _lock, engine.begin() as conn:
            if _has_index(conn, model, dims):
                continue
            report(f"pgvector: building the HNSW index for {model} ({dims} dims)")
            _build(conn, model, dims)
            built += 1
    return built


def _has_index(conn: Connection, model: str, dims: int) -> bool:
    found = conn.execute(
        text("SELECT 1 FROM pg_indexes WHERE indexname = :n"), {"n": _index_name(model, dims)}
    )
    return found.first() is not None


def _build(conn: Connection, model: str, dims: int) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    started = time.monotonic()
    conn.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS {_index_name(model, dims)} ON {TABLE} "
            f"USING hnsw ((embedding::vector({int(dims)})) vector_ip_ops) "
            f"WHERE {_predicate(model, dims)}"
        )
    )
    log.info(
        "pgvector: HNSW index for %s (%d dims) built in %.1f s",
        model,
        dims,
        time.monotonic() - started,
    )


def _scope_sql(user_id: str | None, states: tuple[str, ...] | None) -> str:
    where = "m.brain_id = :pgv_brain"
    if user_id is not None:
        where += " AND m.user_id = :pgv_user"
    if states is not None:
        where += " AND m.state = ANY(CAST(:pgv_states AS text[]))"
    return where


# The fewest nearest memories search asks for (core/retrieval/search.py's _MIN_CANDIDATES);
# a scope known to be larger than the sample gets them in the sample's own statement.
PREFETCH = 50
# Scopes last seen larger than the sample, per engine (bounded: a hint, not a record).
_large: dict[tuple[str, str, str | None, tuple[str, ...] | None, str, int], bool] = {}
_LARGE_AT_MOST = 10_000
# On the pooled connection's info (kept as long as the DBAPI connection): the hnsw.ef_search
# this session runs with, once set_config made it session-wide. Per search it was one round
# trip more (a statement of its own before the nearest-neighbour query).
_SESSION_EF = "mnemo_hnsw_ef_search"

_ScopeKey = tuple[str, str, str | None, tuple[str, ...] | None, str, int]


@dataclass
class _Sample:
    vectors: np.ndarray  # float32, one row per sampled vector
    population: int  # the scope's size as the sample estimated it
    last_rank: float  # the largest sample_rank in it: a new vector below it enters the sample
    expires: float  # time.monotonic()


class _SampleCache:
    """The sampled vectors of scopes larger than the sample, per (engine, brain, user, states,
    model, dims): with one, a search computes the scope's statistics in the process (1,000 dot
    products, ~0.1 ms) instead of reading the sample (8-20 ms of a 10,000-memory search at
    10,000 memories, most of its time in the database). Kept `SECONDS` at most, so what other
    processes wrote (new vectors, archived memories: a few of the scope's thousands) reaches
    the estimate within that; a vector this process writes that enters a kept sample drops it
    at once. Bounded by bytes, least recently used first out."""

    SECONDS = 60.0
    MAX_BYTES = 32 << 20

    def __init__(self) -> None:
        self._entries: OrderedDict[_ScopeKey, _Sample] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: _ScopeKey) -> _Sample | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found.expires <= time.monotonic():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return found

    def put(self, key: _ScopeKey, sample: _Sample) -> None:
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = sample
            self._bytes += sample.vectors.nbytes
            while self._bytes > self.MAX_BYTES and len(self._entries) > 1:
                self._drop(next(iter(self._entries)))

    def entered(self, engine: str, brain_id: str, model: str, dims: int, rank: float) -> None:
        """A vector with this sample rank was written to the brain: drop the samples of the
        brain's scopes (any user or state: the vector's are not known here) it falls into."""
        with self._lock:
            for key in [
                k
                for k, v in self._entries.items()
                if k[0] == engine
                and k[1] == brain_id
                and k[4:] == (model, dims)
                and rank <= v.last_rank
            ]:
                self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: _ScopeKey) -> None:
        self._bytes -= self._entries.pop(key).vectors.nbytes


_samples = _SampleCache()


def _ef_search(n: int) -> int:
    """HNSW's candidate list for the n nearest: twice n, at least 100 (pgvector's default is
    40), at most 1,000 (pgvector's limit)."""
    return min(1000, max(100, 2 * n))


def _forget_session(conn: Connection, *_savepoint: object) -> None:
    """A rollback undoes a set_config made inside the transaction: the session's settings are
    then no longer known, and the next search sets them again. On a connection in autocommit
    (a search, engine.reads) there is nothing to undo: each set_config committed as it ran."""
    with suppress(Exception):  # a connection already gone keeps nothing
        driver = conn.connection.driver_connection
        if driver is None or not driver.autocommit:
            conn.connection.info.pop(_SESSION_EF, None)


def _session(conn: Connection, n: int, iterative_scan: bool) -> None:
    """The session's HNSW settings for the n nearest, set once per connection (and again only
    when n needs another ef_search): hnsw.ef_search; with pgvector >= 0.8, iterative scans in
    relaxed order (rows of other brains, users or states are skipped and the scan goes on, so a
    filtered scope still gets its n nearest; ranking re-sorts anyway). Session-wide, since a
    search need not run in a transaction of its own; nothing else scans an HNSW index."""
    ef = _ef_search(n)
    info = conn.connection.info
    if info.get(_SESSION_EF) == ef:
        return
    setting = "SELECT set_config('hnsw.ef_search', :ef, false)"
    if iterative_scan:
        setting += ", set_config('hnsw.iterative_scan', 'relaxed_order', false)"
    for undone in ("rollback", "rollback_savepoint"):
        if not event.contains(conn.engine, undone, _forget_session):
            event.listen(conn.engine, undone, _forget_session)
    conn.execute(text(setting), {"ef": str(ef)})
    info[_SESSION_EF] = ef


@dataclass
class PgSemantic:
    """The numpy path's `_Semantic` (core/retrieval/search.py) answered by PostgreSQL: the scope's
    size, its nearest memories, and standardised cosines of any memory asked about.

    Each statement is a round trip, and on a busy machine a round trip costs more than most of
    these statements take to run: for a scope seen larger than the sample before, the sample
    and the nearest memories are one statement; the HNSW settings are the session's, set once
    per connection; the cosines of candidates come with their rank columns (`read_back`)."""

    conn: Connection
    params: dict[str, object]
    model: str
    dims: int
    scope_where: str
    std: Standardiser
    population: int
    cosines: dict[str, float]
    exact: bool  # the sample was the whole scope
    iterative_scan: bool
    prefetched: dict[str, float] | None = None  # the PREFETCH nearest, read with the sample
    asked: set[str] = field(default_factory=set)  # ids whose cosine was read (or is none)

    @classmethod
    def load(
        cls,
        conn: Connection,
        *,
        brain_id: str,
        user_id: str | None,
        states: tuple[str, ...] | None,
        model: str,
        vector: np.ndarray,
        noise: float,
        strong: float,
        prior: float,
    ) -> PgSemantic:
        import numpy as np

        dims = int(vector.shape[0])
        _ensure_index(conn.engine, model, dims)
        params: dict[str, object] = {"pgv_brain": brain_id, "pgv_q": literal(vector)}
        if user_id is not None:
            params["pgv_user"] = user_id
        if states is not None:
            params["pgv_states"] = text_array(states)
        scope_where = _scope_sql(user_id, states)
        state = _engines[_key(conn.engine)]
        large_key = (_key(conn.engine), brain_id, user_id, states, model, dims)
        kept = _samples.get(large_key)
        if kept is not None:
            # The statistics from the sample kept: no statement; the nearest come from the
            # index when asked (top), the candidates' cosines with their rank columns.
            values = (kept.vectors @ np.asarray(vector, np.float32)).astype(np.float64)
            std = _standardiser(
                values,
                kept.population,
                prior=prior,
                prior_value=noise,
                min_std=(strong - noise) / 4,
            )
            return cls(
                conn,
                params,
                model,
                dims,
                scope_where,
                std,
                kept.population,
                {},
                False,
                state.iterative_scan,
            )
        # The sample; the cosine is computed in the outer query, for the sample only.
        sample = (
            "SELECT 0, s.memory_id, -(s.embedding <#> CAST(:pgv_q AS vector)), s.sample_rank "
            "FROM (SELECT p.memory_id, p.embedding, p.sample_rank "
            f"FROM {TABLE} p JOIN memories m ON m.id = p.memory_id "
            f"WHERE p.brain_id = :pgv_brain AND {_predicate(model, dims, 'p.')} "
            f"AND {scope_where} ORDER BY p.sample_rank LIMIT {SAMPLE_SIZE}) AS s"
        )
        statement = sample
        with_nearest = False
        if _large.get(large_key):
            # The nearest in the same statement: the session's settings must be in place
            # before it (within one statement, nothing orders a set_config before the scan).
            _session(conn, PREFETCH, state.iterative_scan)
            nearest_sql = _nearest_sql(dims, model, scope_where, PREFETCH)
            statement += f" UNION ALL SELECT 1, t.memory_id, t.cosine, 0 FROM ({nearest_sql}) t"
            with_nearest = True
        rows = tuples(conn, statement, params)
        sampled = [(r[1], float(r[2]), float(r[3])) for r in rows if r[0] == 0]
        cosines = {memory_id: cosine for memory_id, cosine, _ in sampled}
        values = np.fromiter(cosines.values(), np.float64, len(cosines))
        exact = len(sampled) < SAMPLE_SIZE
        if len(_large) > _LARGE_AT_MOST:
            _large.clear()
        _large[large_key] = not exact
        # The k-th smallest of n uniform ranks is near k / n: (k - 1) / rank is unbiased for n.
        last = max((rank for _, _, rank in sampled), default=0.0)
        population = len(sampled) if exact else round((SAMPLE_SIZE - 1) / max(last, 1e-9))
        std = _standardiser(
            values, population, prior=prior, prior_value=noise, min_std=(strong - noise) / 4
        )
        found = cls(
            conn,
            params,
            model,
            dims,
            scope_where,
            std,
            population,
            cosines,
            exact,
            state.iterative_scan,
        )
        if with_nearest and not exact:
            nearest = [(r[1], float(r[2])) for r in rows if r[0] == 1]
            if len(nearest) == PREFETCH:  # else the scope is small after all: exactly, below
                found.prefetched = dict(nearest)
        if not exact:
            _keep_sample(
                conn, large_key, [memory_id for memory_id, _, _ in sampled], population, last
            )
        return found

    def top(self, n: int) -> list[str]:
        if not self.exact:
            if self.prefetched is not None and n == len(self.prefetched):
                self.cosines.update(self.prefetched)
            else:  # the index asked for n (its answer for PREFETCH need not be a part of it)
                self._nearest(n)
        ranked = sorted(self.cosines.items(), key=lambda kv: (-kv[1], kv[0]))
        return [memory_id for memory_id, _ in ranked[:n]]

    def _nearest(self, n: int) -> None:
        """The n nearest in scope from the HNSW index (filters applied during the scan)."""
        _session(self.conn, n, self.iterative_scan)
        statement = _nearest_sql(self.dims, self.model, self.scope_where, n)
        found = tuples(self.conn, statement, self.params)
        if len(found) < n:
            # Either the scope holds fewer than n vectors, or the index scan gave up
            # (hnsw.max_scan_tuples) before finding n of them among other brains' and users':
            # either way the scope is small, so rank it exactly (the expression without the
            # cast is not the index's: no index scan).
            exact = (
                "SELECT p.memory_id, -(p.embedding <#> CAST(:pgv_q AS vector)) "
                f"FROM {TABLE} p JOIN memories m ON m.id = p.memory_id "
                f"WHERE p.brain_id = :pgv_brain AND {_predicate(self.model, self.dims, 'p.')} "
                f"AND {self.scope_where} ORDER BY 2 DESC LIMIT {int(n)}"
            )
            found = tuples(self.conn, exact, self.params)
        for memory_id, cosine in found:
            self.cosines[memory_id] = float(cosine)

    def nearest_read_back(
        self,
        n: int,
        where: list[str],
        params: dict[str, object],
        columns: str,
        *,
        also: Sequence[str],
    ) -> list[tuple[object, ...]]:
        """`top(n)` less `also`, then `read_back` of them with the cosines of `also`, in one
        statement where they took two: the nearest from the HNSW index joined to their rows.
        Rows come in top's order (nearest first, then by id). When the index comes back short
        (a small scope, or the scan gave up among other tenants' vectors), the two steps run
        as before, the nearest then ranked exactly."""
        if self.exact or (self.prefetched is not None and n == len(self.prefetched)):
            lexical = set(also)
            nearest = [i for i in self.top(n) if i not in lexical]
            return self.read_back(where, params, nearest, columns, also=also)
        wanted = list(
            dict.fromkeys(i for i in also if i not in self.cosines and i not in self.asked)
        )
        if not wanted:
            # No other cosine to read (a semantic search): the nearest with their own cosines,
            # not each vector read a second time to compute it again.
            statement = self.nearest_rows_sql(n, where, columns)
            rows = tuples(self.conn, statement, {**params, **self.params})
            return self.take_nearest(rows, n, where, params, columns, also=also)
        _session(self.conn, n, self.iterative_scan)
        nearest_sql = _nearest_sql(self.dims, self.model, self.scope_where, n)
        statement = (
            f"WITH t AS ({nearest_sql}), "
            "c AS (SELECT t.memory_id AS value, 1 AS near FROM t UNION ALL "
            "SELECT a.value, 0 FROM unnest(CAST(:pgv_ids AS text[])) AS a(value)) "
            f"SELECT c.near, (SELECT count(*) FROM t), {columns}, CASE WHEN {self.scope_where} "
            "THEN -(p.embedding <#> CAST(:pgv_q AS vector)) END "
            "FROM c JOIN memories m ON m.id = c.value "
            f"LEFT JOIN {TABLE} p ON p.memory_id = m.id AND p.brain_id = :pgv_brain AND "
            f"{_predicate(self.model, self.dims, 'p.')} WHERE {' AND '.join(where)}"
        )
        rows = tuples(
            self.conn, statement, {**params, **self.params, "pgv_ids": text_array(wanted)}
        )
        if not rows or int(rows[0][1]) < n:
            # Short (or nothing to tell): rank the nearest exactly, then read them back.
            lexical = set(also)
            nearest = [i for i in self.top(n) if i not in lexical]
            return self.read_back(where, params, nearest, columns, also=also)
        self.asked.update(wanted)
        lexical = set(also)
        near: dict[str, tuple[object, ...]] = {}
        for row in rows:
            memory_id, cosine = row[2], row[-1]
            if cosine is not None:
                self.cosines[str(memory_id)] = float(cosine)
            if row[0] == 1 and memory_id not in lexical:
                near[str(memory_id)] = tuple(row[2:-1])
        self.asked.update(near)
        order = sorted(near, key=lambda i: (-self.cosines.get(i, -math.inf), i))
        return [near[i] for i in order]

    def folds(self, n: int) -> bool:
        """Whether `nearest_read_back(n)` may be read as `nearest_rows_sql` inside another
        statement: the index is asked (the scope is larger than the sample), and not for the
        nearest the sample's statement brought already."""
        return not self.exact and not (self.prefetched is not None and n == len(self.prefetched))

    def nearest_rows_sql(self, n: int, where: list[str], columns: str) -> str:
        """A SELECT of `columns`, the cosine and the index's count of the n nearest in scope that
        match `where`, for another statement to read (with `params`); its rows go to
        `take_nearest`. The session's HNSW settings are put in place first: within one
        statement nothing orders a set_config before the scan."""
        _session(self.conn, n, self.iterative_scan)
        nearest = _nearest_sql(self.dims, self.model, self.scope_where, n)
        return (
            f"WITH t AS ({nearest}) SELECT {columns}, t.cosine, (SELECT count(*) FROM t) "
            f"FROM t JOIN memories m ON m.id = t.memory_id WHERE {' AND '.join(where)}"
        )

    def complete(self, rows: Sequence[tuple[object, ...]], n: int) -> bool:
        """Whether the index gave `nearest_rows_sql`'s rows all n nearest (else `take_nearest`
        ranks the scope exactly)."""
        return bool(rows) and int(cast(int, rows[0][-1])) >= n

    def take_nearest(
        self,
        rows: Sequence[tuple[object, ...]],
        n: int,
        where: list[str],
        params: dict[str, object],
        columns: str,
        *,
        also: Sequence[str],
    ) -> list[tuple[object, ...]]:
        """`nearest_read_back(n, ..., also=also)` from the rows `nearest_rows_sql` read, the
        cosines of `also` read already (`noted`). When the index came back short, or nothing
        came back, the nearest are ranked exactly and read back, as `nearest_read_back` does."""
        if not self.complete(rows, n):
            lexical = set(also)
            nearest = [i for i in self.top(n) if i not in lexical]
            return self.read_back(where, params, nearest, columns, also=also)
        lexical = set(also)
        near: dict[str, tuple[object, ...]] = {}
        for row in rows:
            memory_id = str(row[0])
            self.cosines[memory_id] = float(cast(float, row[-2]))
            if memory_id not in lexical:
                near[memory_id] = tuple(row[:-2])
        self.asked.update(near)
        order = sorted(near, key=lambda i: (-self.cosines.get(i, -math.inf), i))
        return [near[i] for i in order]

    def read_back(
        self,
        where: list[str],
        params: dict[str, object],
        ids: list[str],
        columns: str,
        *,
        also: Sequence[str] = (),
    ) -> list[tuple[object, ...]]:
        """search's read-back of candidates (`columns` of those of `ids` that are in scope and
        match the filters `where`), with the cosine of each, and of each of `also` (memories
        already read: their rows are not returned), in the same statement: one round trip
        where the read-back and `z` took two."""
        wanted = [*ids, *(i for i in also if i not in self.cosines and i not in self.asked)]
        wanted = list(dict.fromkeys(wanted))
        if not wanted:
            return []
        # In the scope like every other query here (user and states too): a memory outside it
        # counts as one without a vector.
        statement = (
            f"SELECT {columns}, CASE WHEN {self.scope_where} "
            "THEN -(p.embedding <#> CAST(:pgv_q AS vector)) END "
            "FROM unnest(CAST(:pgv_ids AS text[])) AS c(value) JOIN memories m ON m.id = c.value "
            f"LEFT JOIN {TABLE} p ON p.memory_id = m.id AND p.brain_id = :pgv_brain AND "
            f"{_predicate(self.model, self.dims, 'p.')} WHERE {' AND '.join(where)}"
        )
        rows = tuples(
            self.conn, statement, {**params, **self.params, "pgv_ids": text_array(wanted)}
        )
        self.asked.update(wanted)
        kept = set(ids)
        out = []
        for row in rows:
            memory_id, cosine = row[0], row[-1]
            if cosine is not None:
                self.cosines[memory_id] = float(cosine)
            if memory_id in kept:
                out.append(tuple(row[:-1]))
        return out

    def cosine_sql(self) -> tuple[str, str]:
        """(a LEFT JOIN, the cosine) for a statement over memories as m that reads candidates:
        the cosine of each in the scope (NULL: none, or outside it, which `z` counts as a
        memory without a vector). Execute the statement with this search's `params`, and tell
        `noted` what it read."""
        join = (
            f"LEFT JOIN {TABLE} pv ON pv.memory_id = m.id AND pv.brain_id = :pgv_brain AND "
            f"{_predicate(self.model, self.dims, 'pv.')}"
        )
        cosine = "-(pv.embedding <#> CAST(:pgv_q AS vector))"
        return join, f"CASE WHEN {self.scope_where} THEN {cosine} END"

    def noted(self, cosines: Sequence[tuple[str, float | None]]) -> None:
        """(id, cosine or None) of candidates a statement read with `cosine_sql`."""
        for memory_id, cosine in cosines:
            self.asked.add(memory_id)
            if cosine is not None:
                self.cosines[memory_id] = float(cosine)

    def z(self, ids: list[str]) -> np.ndarray:
        """Standardised cosines; a memory without a vector of this model counts as average."""
        import numpy as np

        missing = [i for i in ids if i not in self.cosines and i not in self.asked]
        if missing and not self.exact:
            # In the scope like every other query here (user and states too, not only the
            # brain): an id outside it counts as a memory without a vector.
            statement = (
                "SELECT p.memory_id, -(p.embedding <#> CAST(:pgv_q AS vector)) "
                f"FROM {TABLE} p JOIN memories m ON m.id = p.memory_id "
                "WHERE p.brain_id = :pgv_brain AND p.memory_id = ANY(CAST(:pgv_ids AS text[])) "
                f"AND {_predicate(self.model, self.dims, 'p.')} AND {self.scope_where}"
            )
            found = tuples(self.conn, statement, {**self.params, "pgv_ids": text_array(missing)})
            self.asked.update(missing)
            self.cosines.update((memory_id, float(c)) for memory_id, c in found)
        cosines = np.array([self.cosines.get(i, self.std.mean) for i in ids], np.float64)
        return self.std.z(cosines)


def _keep_sample(
    conn: Connection, key: _ScopeKey, ids: list[str], population: int, last_rank: float
) -> None:
    """Read the sampled vectors (float32 bytes from memory_vectors, which the copy mirrors:
    pgvector's text form parses a hundred times slower) and keep them for the next searches."""
    import numpy as np

    _, brain_id, _, _, model, dims = key
    rows = conn.execute(
        text(
            "SELECT memory_id, vector FROM memory_vectors WHERE brain_id = :brain "
            "AND model = :model AND memory_id = ANY(CAST(:ids AS text[]))"
        ),
        {"brain": brain_id, "model": model, "ids": text_array(ids)},
    ).all()
    found = {memory_id: bytes(vector) for memory_id, vector in rows}
    blobs = [found[i] for i in ids if i in found and len(found[i]) == 4 * dims]
    if not blobs:
        return
    vectors = np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), dims)
    expires = time.monotonic() + _SampleCache.SECONDS
    _samples.put(key, _Sample(vectors, population, last_rank, expires))


def _nearest_sql(dims: int, model: str, scope_where: str, n: int) -> str:
    """The n nearest of the scope by the model's HNSW index: (memory_id, cosine)."""
    d = int(dims)
    return (
        f"SELECT p.memory_id, -(p.embedding::vector({d}) <#> CAST(:pgv_q AS vector({d}))) "
        f"AS cosine FROM {TABLE} p JOIN memories m ON m.id = p.memory_id "
        f"WHERE p.brain_id = :pgv_brain AND {_predicate(model, d, 'p.')} AND {scope_where} "
        f"ORDER BY p.embedding::vector({d}) <#> CAST(:pgv_q AS vector({d})) LIMIT {int(n)}"
    )


def _standardiser(
    sample: np.ndarray, population: int, *, prior: float, prior_value: float, min_std: float
) -> Standardiser:
    """ranking.standardiser over `population` memories whose cosines are distributed like
    `sample` (the same prior pseudo-memories), from the sample's first two moments."""
    import numpy as np

    from core.retrieval.ranking import Standardiser

    if len(sample) == 0:
        return Standardiser(prior_value, min_std)
    count = population + prior
    mean = (population * sample.mean() + prior * prior_value) / count
    second = (population * np.square(sample).mean() + prior * prior_value**2) / count
    return Standardiser(float(mean), max(math.sqrt(max(second - mean**2, 0.0)), min_std))
