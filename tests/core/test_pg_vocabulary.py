"""PostgreSQL's stand-in for FTS5's vocabulary table: ANALYZE's commonest lexemes of
memories.search_vector, read from pg_stats (core/retrieval/lexical.py `_vocabulary`)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from core.kernel.config import Settings
from core.kernel.db.engine import get_engine
from core.kernel.db.migrations import ensure_schema
from core.retrieval import lexical
from tests.conftest import make_tenant
from tests.lambda_client import LambdaClient


def test_the_commonest_words_are_read_from_analyze(shared_postgres_url: str) -> None:
    engine = get_engine(shared_postgres_url)
    ensure_schema(engine)
    tenant = make_tenant(engine)
    client = LambdaClient(Settings(database_url=shared_postgres_url), key=tenant.key)
    word = "zq" + uuid.uuid4().hex[:8]  # in every memory of this test, in no other
    batch = [
        {"content": f"{word} planted tomatoes on day {i} ({uuid.uuid4().hex})"} for i in range(60)
    ]
    reply = client.post("/v1/memories/batch", json_body={"memories": batch})
    assert reply.status in (200, 201), reply.body
    with engine.begin() as conn:
        conn.execute(text("ANALYZE memories"))
    lexical.forget_vocabulary()
    try:
        with engine.connect() as conn:
            found = lexical._vocabulary(conn)
            assert found is not None
            rows = conn.execute(text("SELECT count(*) FROM memories")).scalar_one()
            held = conn.execute(
                text("SELECT count(*) FROM memories WHERE search_vector @@ plainto_tsquery(:w)"),
                {"w": word},
            ).scalar_one()
            # ANALYZE samples at most 30,000 rows: the whole table here, so the share is exact.
            assert found.count(word) == pytest.approx(held / rows * found.rows, rel=1e-3)
            assert found.count("tomatoes") >= found.count(word)  # stemmed: "tomato"
            assert found.count("no-such-word-" + word) == 0.0
            # Memoised: the statistics are read once per process every ten minutes.
            assert lexical._vocabulary(conn) is found
    finally:
        lexical.forget_vocabulary()
