"""PostgreSQL's full-text lookups: the statements (core/retrieval/lexical.py
`_postgres_candidates`) read their matches once, whatever the planner believes about the table,
and a word is looked up in the index without a pending list to scan.

Before ANALYZE has run the planner expects one match, and it re-ran the document-frequency
aggregate once per match: every add's write-gate lookup and every search then cost the square of
the matches (120 ms a lookup at 800 memories sharing their words, and 4 x 500 concurrent adds
took 240 s). These tests run on a database no ANALYZE has seen and ask EXPLAIN ANALYZE how many
rows the statements' steps read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from core.kernel.config import Settings
from core.kernel.db.engine import dispose, get_engine
from core.kernel.db.migrations import ensure_schema
from core.memory import access
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
            cte_rows = sum(
                node["Actual Rows"] * node["Actual Loops"]
                for node in nodes
                if node["Node Type"] == "CTE Scan"
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
