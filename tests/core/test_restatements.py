"""The write gate's candidate lookup (core/retrieval/restatements.py) on SQLite: it reads the
rarest words' postings and remembers word counts per process, so what it finds must not
depend on what it remembers."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from core.embeddings import get_embedder
from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from core.kernel.scope import Scope
from core.memory import store
from core.memory.indexing import document_text
from core.memory.models import MemoryIn
from core.retrieval import restatements
from core.retrieval.indexing import SearchIndexer
from tests.conftest import Tenant


@pytest.fixture(autouse=True)
def _forget() -> None:
    restatements.COUNTS.clear()


def _save(engine: Engine, settings: Settings, scope: Scope, *items: MemoryIn) -> list[str]:
    index = SearchIndexer(get_embedder(settings.embedder))
    index.prepare([document_text(m.title, m.key, m.tags, m.content) for m in items])
    with transaction(engine) as conn:
        return [
            store.create(conn, scope, m, settings.limits, index, screen=False)["id"] for m in items
        ]


def _found(engine: Engine, settings: Settings, brain: str, user: str, text: str) -> list[str]:
    index = SearchIndexer(get_embedder(settings.embedder))
    doc = document_text(None, None, [], text)
    index.prepare([doc])
    with transaction(engine, write=False) as conn:
        found = index.similar(conn, brain, user, content=text, key=None, doc=doc, n=3)
    return [c.id for c in found]


def test_an_owners_restatement_is_found_behind_other_owners_matches(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    text = "Quillon repairs harpsichords in Ghent"
    # More of other users' rows holding the words than the first rows looked up.
    _save(engine, settings, scope, *(MemoryIn(content=text, user_id=f"u{i}") for i in range(12)))
    [mine] = _save(engine, settings, scope, MemoryIn(content=text + ".", user_id="alice"))
    assert _found(engine, settings, tenant.brain_id, "alice", text) == [mine]


def test_a_word_first_seen_in_no_memory_is_counted_again(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    text = "Zorblax the tortoise sleeps under the stairs"
    assert _found(engine, settings, tenant.brain_id, "alice", text) == []
    [made] = _save(engine, settings, scope, MemoryIn(content=text, user_id="alice"))
    assert _found(engine, settings, tenant.brain_id, "alice", text + "!") == [made]


def test_a_word_grown_common_since_it_was_counted_still_finds_the_restatement(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    [made] = _save(
        engine, settings, scope, MemoryIn(content="Brindlewood keeps the bees", user_id="alice")
    )
    text = "Brindlewood keeps the bees."
    assert _found(engine, settings, tenant.brain_id, "alice", text) == [made]  # counts kept
    # The remembered counts are now far too low: every word in more rows than the cap.
    _save(
        engine,
        settings,
        scope,
        *(
            MemoryIn(content=f"Brindlewood keeps bees number {i}", user_id="bob")
            for i in range(120)
        ),
    )
    assert _found(engine, settings, tenant.brain_id, "alice", text) == [made]


@pytest.mark.parametrize("others", [0, 12], ids=["few-memories", "many-memories"])
def test_an_owners_rows_behind_others_are_found_however_many_she_has(
    engine: Engine,
    settings: Settings,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    others: int,
) -> None:
    """Behind other owners' best rows, the rest is narrowed to the owner's rows by her
    rowids when she has few memories, and looked up whole when she has many: the same
    rows either way."""
    scope = Scope(tenant.brain_id, "agent")
    text = "Quillon repairs harpsichords in Ghent"
    _save(engine, settings, scope, *(MemoryIn(content=text, user_id=f"u{i}") for i in range(4)))
    [mine, also] = _save(
        engine,
        settings,
        scope,
        MemoryIn(content=text + ".", user_id="alice"),
        MemoryIn(content="Quillon repairs lutes", user_id="alice"),
    )
    _save(
        engine,
        settings,
        scope,
        *(MemoryIn(content=f"Alice waters fern {i}", user_id="alice") for i in range(others)),
    )
    narrowed: list[bool] = []
    share = restatements._owners_share

    def spy(conn: Any, owner: Any, ranked: list[tuple[str, float]]) -> Any:
        out = share(conn, owner, ranked)
        narrowed.append(out is not ranked)
        return out

    monkeypatch.setattr(restatements, "_owners_share", spy)
    assert _found(engine, settings, tenant.brain_id, "alice", text) == [mine, also]
    if engine.dialect.name == "sqlite":
        assert narrowed == [others == 0]
