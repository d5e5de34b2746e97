"""PostgreSQL's full-text lookups: the statements (core/retrieval/lexical.py
`_postgres_candidates`) read their matches once, whatever the planner believes about the table,
and a word is looked up in the index without a pending list to scan.

Before ANALYZE has run the planner expects one match, and it re-ran the document-frequency
aggregate once per match: every add's write-gate lookup and every search then cost the square of
the matches (120 ms a lookup at 800 memories sharing their words, and 4 x 500 concurrent adds
took 240 s). These tests run on a database no ANALYZE has seen and ask EXPLAIN ANALYZE how many
rows the statements' steps read."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.sql
import pytest
from sqlalchemy import text

from core.kernel.config import Settings
from core.kernel.db.engine import dispose, get_engine
from core.kernel.db.migrations import ensure_schema
from core.memory import access
from core.retrieval import lexical
from tests.conftest import make_tenant, new_postgres_database
from tests.lambda_client import LambdaClient
from tests.statements import statements_sent

MEMORIES = 300


@pytest.fixture
def fresh_url(postgres_admin_url: str) -> Iterator[str]:
    """A migrated database whose memories autovacuum leaves alone: no ANALYZE gives the
    planner statistics and no VACUUM merges the index's pending list during the test."""
    url = new_postgres_database(postgres_admin_url)
    engine = get_engine(url)
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE memories SET (autovacuum_enabled = false)")
    yield url
    access.flush(get_engine(url))  # the search's access counts, while the database is there
    dispose(url)


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_each_match_is_read_a_bounded_number_of_times_before_analyze(fresh_url: str) -> None:
    engine = get_engine(fresh_url)
    tenant = make_tenant(engine)
    client = LambdaClient(Settings(database_url=fresh_url, log_level="WARNING"), key=tenant.key)
    batch = [{"content": f"garden worker note {i} about tomatoes"} for i in range(MEMORIES)]
    reply = client.post("/v1/memories/batch", json_body={"memories": batch})
    assert reply.status in (200, 201), reply.body
    with engine.connect() as conn:
        analyzed = conn.execute(
            text(
                "SELECT last_analyze, last_autoanalyze FROM pg_stat_user_tables "
                "WHERE relname = 'memories'"
            )
        ).one()
    assert analyzed == (None, None), "the table must be one the planner knows nothing of"

    def add_and_search() -> None:
        added = client.post("/v1/memories", {"content": "garden worker note about tomatoes"})
        assert added.status in (200, 201), added.body
        found = client.post("/v1/search", {"query": "garden worker tomatoes", "limit": 5})
        assert found.status == 200, found.body

    with statements_sent(engine) as sent:
        add_and_search()
    statements = [
        (statement, params)
        for statement, params in zip(sent.statements, sent.params, strict=True)
        if "FROM memories m, w" in statement  # the full-text candidates statements
    ]
    assert len(statements) >= 2, "the gate's lookup and the search both read full text"
    with engine.connect() as conn:
        for statement, params in statements:
            explained = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
            nodes = list(_plan_nodes(explained.scalar_one()[0]["Plan"]))
            for node in nodes:
                if node["Node Type"] == "Aggregate":
                    assert node["Actual Loops"] == 1, (node, statement[:200])
            # The one-row steps (the words' queries, the words' IDFs) may be read once per
            # match: they are computed once, and a read of a kept row costs nothing.
            assert all(
                node["Actual Rows"] <= 1
                for node in nodes
                if node["Node Type"] == "CTE Scan" and node["CTE Name"] in ("w", "f")
            ), statement[:200]
            cte_rows = sum(
                node["Actual Rows"] * node["Actual Loops"]
                for node in nodes
                if node["Node Type"] == "CTE Scan" and node["CTE Name"] not in ("w", "f")
            )
            # The matches are read twice (frequencies, then scores), and once more at most.
            assert MEMORIES <= cte_rows <= 3 * (MEMORIES + 1), (cte_rows, statement[:200])


def test_a_word_no_memory_holds_is_looked_up_without_scanning_a_pending_list(
    fresh_url: str,
) -> None:
    """GIN's fast update kept new entries in a pending list that every lookup read in full
    until VACUUM (migration 20): a search's near-word lookup probes ~150 such words a typo."""
    engine = get_engine(fresh_url)
    tenant = make_tenant(engine)
    client = LambdaClient(Settings(database_url=fresh_url, log_level="WARNING"), key=tenant.key)
    batch = [
        {"content": f"note {i}: {' '.join(f'w{i}x{j}' for j in range(30))}"}
        for i in range(MEMORIES)
    ]
    reply = client.post("/v1/memories/batch", json_body={"memories": batch})
    assert reply.status in (200, 201), reply.body
    with engine.connect() as conn:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # the index, even on a small table
        explained = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT count(*) FROM memories "
            "WHERE search_vector @@ plainto_tsquery('english', 'zqxnosuchword')"
        )
        plan = explained.scalar_one()[0]["Plan"]
        held = conn.execute(
            text("SELECT count(*) FROM memories WHERE search_vector @@ plainto_tsquery(:w)"),
            {"w": "w7x3"},
        ).scalar_one()
    assert held == 1  # what was added is in the index
    probes = [node for node in _plan_nodes(plan) if node["Node Type"] == "Bitmap Index Scan"]
    assert probes, plan
    # A descent of the entry tree reads a few pages; with the pending list it read 27.
    pages = sum(p["Shared Hit Blocks"] + p["Shared Read Blocks"] for p in probes)
    assert pages <= 6, pages


def test_a_generic_plan_parses_the_words_once(fresh_url: str) -> None:
    """psycopg prepares a statement it has run five times, and PostgreSQL settles on a
    generic plan for it: a plan for any values, in which the words' queries are not constants.
    There they must still be parsed once per statement: parsed per ts_rank of every match they
    made the full-text statement 2.5 times as slow as the plan for the values."""
    engine = get_engine(fresh_url)
    tenant = make_tenant(engine)
    client = LambdaClient(Settings(database_url=fresh_url, log_level="WARNING"), key=tenant.key)
    batch = [{"content": f"garden worker note {i} about tomatoes"} for i in range(40)]
    reply = client.post("/v1/memories/batch", json_body={"memories": batch})
    assert reply.status in (200, 201), reply.body
    with statements_sent(engine) as sent:
        found = client.post("/v1/search", {"query": "garden worker tomatoes", "limit": 5})
    assert found.status == 200, found.body
    statement, params = next(
        (s, p) for s, p in zip(sent.statements, sent.params, strict=True) if "WITH w AS" in s
    )
    order: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    prepared = re.sub(r"%\((\w+)\)s", placeholder, statement).replace("%%", "%")
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(psycopg.sql.SQL("PREPARE lexical AS " + prepared))
        values = ", ".join(psycopg.sql.Literal(params[name]).as_string(conn) for name in order)
        explained = conn.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE lexical({values})")
        plan = explained.fetchone()[0][0]["Plan"]  # type: ignore[index]
    nodes = list(_plan_nodes(plan))
    parsing = [
        node.get("Subplan Name")
        for node in nodes
        if "plainto_tsquery" in json.dumps({k: v for k, v in node.items() if k != "Plans"})
    ]
    assert "CTE w" in parsing, parsing
    # Nothing under the matches (the index probe, the heap scan, the ranks) parses a word.
    (matches,) = [node for node in nodes if node.get("Subplan Name") == "CTE h"]
    assert "plainto_tsquery" not in json.dumps(matches)


def test_searches_of_one_to_eight_words_share_two_statements_and_rank_alike(
    fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The words are padded to four or eight columns (the rest NULL), so that psycopg prepares
    the full-text statement and PostgreSQL plans it once, whatever the number of words; the
    padding ranks as the words alone did."""
    engine = get_engine(fresh_url)
    tenant = make_tenant(engine)
    client = LambdaClient(Settings(database_url=fresh_url, log_level="WARNING"), key=tenant.key)
    words = ["garden", "tomato", "worker", "basil", "fence", "shovel", "compost", "hedge"]
    batch = [
        {"content": " ".join(words[j] for j in range(8) if (i >> (j % 4)) & 1 or j == i % 8)}
        for i in range(60)
    ]
    reply = client.post("/v1/memories/batch", json_body={"memories": batch})
    assert reply.status in (200, 201), reply.body
    queries = [" ".join(words[:n]) for n in (1, 2, 3, 4, 5, 7, 8)]

    def search_all() -> list[list[tuple[str, float]]]:
        found = []
        for query in queries:
            reply = client.post("/v1/search", {"query": query, "limit": 10, "mode": "lexical"})
            assert reply.status == 200, reply.body
            found.append([(hit["memory"]["id"], hit["score"]) for hit in reply.json()["results"]])
        return found

    with statements_sent(engine) as sent:
        padded = search_all()
    texts = {s for s in sent.statements if "FROM memories m, w" in s}
    assert len(texts) == 2, [t[:120] for t in texts]
    assert all(found for found in padded)
    monkeypatch.setattr(lexical, "_SLOTS", ())  # each number of words a text of its own
    with statements_sent(engine) as sent:
        alone = search_all()
    assert len({s for s in sent.statements if "FROM memories m, w" in s}) == len(queries)
    assert padded == alone
