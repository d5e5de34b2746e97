"""Maintenance merges SQLite's full-text index (core/retrieval/lexical.py, merge_index): every
add writes an index segment and every lookup reads them all, so the run merges them, in
bounded steps, into one, and what search and the write gate find does not change."""

from __future__ import annotations

from sqlalchemy import Engine

from core.app import maintenance
from core.embeddings import get_embedder
from core.kernel.config import Settings
from core.kernel.db.engine import transaction, tuples
from core.kernel.scope import Scope
from core.memory import store
from core.memory.indexing import document_text
from core.memory.models import MemoryIn
from core.retrieval import lexical, restatements
from core.retrieval.indexing import SearchIndexer
from tests.conftest import Tenant

_WORDS = ("harp", "ferry", "cedar", "quartz", "lantern", "orchid", "pepper", "glacier")


def _segments(engine: Engine) -> int:
    with transaction(engine, write=False) as conn:
        return int(tuples(conn, "SELECT count(DISTINCT segid) FROM memory_fts_idx", {})[0][0])


def _add(engine: Engine, settings: Settings, scope: Scope, i: int) -> None:
    """One memory in a transaction of its own: one index segment each, as API adds write."""
    item = MemoryIn(
        content=f"note {i}: {_WORDS[i % 8]} {_WORDS[(i * 3) % 8]} and a {_WORDS[(i + 5) % 8]}",
        user_id=f"u{i % 3}",
    )
    index = SearchIndexer(get_embedder(settings.embedder))
    index.prepare([document_text(item.title, item.key, item.tags, item.content)])
    with transaction(engine) as conn:
        store.create(conn, scope, item, settings.limits, index, screen=False)


def _found(engine: Engine, settings: Settings, brain: str) -> list[object]:
    """A ranked full-text match over the index, and the gate's lookup for each user."""
    restatements.forget()
    out: list[object] = []
    with transaction(engine, write=False) as conn:
        out.append(
            tuples(
                conn,
                "SELECT rowid, round(bm25(memory_fts), 9) FROM memory_fts "
                "WHERE memory_fts MATCH 'harp OR cedar OR glacier' ORDER BY 2, 1",
                {},
            )
        )
    index = SearchIndexer(get_embedder(settings.embedder))
    text = "a harp and a cedar near the glacier"
    doc = document_text(None, None, [], text)
    for user in ("u0", "u1", "u2"):
        with transaction(engine, write=False) as conn:
            found = index.similar(conn, brain, user, content=text, key=None, doc=doc, n=5)
        out.append([c.id for c in found])
    return out


def test_maintenance_merges_the_sqlite_index_into_one_segment(
    engine: Engine, settings: Settings, tenant: Tenant, store: str
) -> None:
    if store != "sqlite":
        assert lexical.merge_index(engine, budget_seconds=5) == (0, True)
        return
    scope = Scope(tenant.brain_id, "agent")
    for i in range(40):
        _add(engine, settings, scope, i)
    assert _segments(engine) > 1
    before = _found(engine, settings, tenant.brain_id)
    # It steps until a step finds nothing left, and ends in one segment.
    steps, done = lexical.merge_index(engine, budget_seconds=30)
    assert done and steps >= 2
    assert _segments(engine) == 1
    assert _found(engine, settings, tenant.brain_id) == before
    # No budget, no step: the next run goes on from there.
    _add(engine, settings, scope, 40)
    assert lexical.merge_index(engine, budget_seconds=0) == (0, False)
    assert _segments(engine) == 2
    # The scheduled run does it and says so.
    record = maintenance.run(engine, settings)
    assert record["fulltext_merge"]["done"] is True
    assert _segments(engine) == 1
