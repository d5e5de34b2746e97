"""The write gate's candidate lookup (core/retrieval/restatements.py) on SQLite: it reads the
rarest words' postings and remembers word counts per process, so what it finds must not
depend on what it remembers."""

from __future__ import annotations

import json
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
    restatements.forget()


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


@pytest.mark.parametrize("cap", [256, 3], ids=["her-rowids-read", "too-many-to-read"])
def test_an_owners_rows_behind_others_are_found_however_many_she_has(
    engine: Engine,
    settings: Settings,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    cap: int,
) -> None:
    """Behind other owners' best rows, only the owner's rows are looked up when her rowids
    are read with the postings (fewer than the cap), and every row otherwise: the same rows
    either way."""
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
        *(MemoryIn(content=f"Alice waters fern {i}", user_id="alice") for i in range(4)),
    )
    monkeypatch.setattr(restatements, "_OWNER_CAP", cap)
    looked_up: list[int] = []
    tuples = restatements.tuples

    def spy(conn: Any, statement: str, params: Any = None) -> Any:
        if "lex_rows" in (params or {}):
            looked_up.append(len(json.loads(params["lex_rows"])))
        return tuples(conn, statement, params)

    monkeypatch.setattr(restatements, "tuples", spy)
    assert _found(engine, settings, tenant.brain_id, "alice", text) == [mine, also]
    if engine.dialect.name == "sqlite":
        # Her two rows, or the best three of six and then the other three.
        assert looked_up == ([2] if cap > 6 else [3, 3])
    # An owner once seen with too many rows to read is not read for again: the same rows.
    owners: list[object] = []
    postings = restatements._postings

    def read(conn: Any, words: list[str], owner: Any) -> Any:
        owners.append(owner)
        return postings(conn, words, owner)

    monkeypatch.setattr(restatements, "_postings", read)
    assert _found(engine, settings, tenant.brain_id, "alice", text) == [mine, also]
    if engine.dialect.name == "sqlite":
        assert (owners[0] is None) == (cap < 6)


def test_four_remembered_rare_words_find_a_restatement_without_counting_new_words(
    engine: Engine, settings: Settings, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once four of a text's words are remembered as rare, only their postings are read:
    a restatement holds them, so words never counted (one saved since included) are not
    looked up. A remembered word grown common sends the lookup back to counting them all."""
    scope = Scope(tenant.brain_id, "agent")
    base = "Quillon repairs harpsichords in Ghent every winter"
    _save(engine, settings, scope, MemoryIn(content=base, user_id="bob"))
    assert _found(engine, settings, tenant.brain_id, "alice", base) == []  # counts its words
    # Saved after the counts were taken, holding a word no count has seen.
    [made] = _save(
        engine, settings, scope, MemoryIn(content=base + " with Marguerite", user_id="alice")
    )
    read: list[list[str]] = []
    postings = restatements._postings

    def spy(conn: Any, words: list[str], owner: Any) -> Any:
        read.append(list(words))
        return postings(conn, words, owner)

    monkeypatch.setattr(restatements, "_postings", spy)
    text = "Quillon repairs harpsichords in Ghent every winter, with Marguerite."
    assert _found(engine, settings, tenant.brain_id, "alice", text) == [made]
    if engine.dialect.name == "sqlite":
        assert len(read) == 1 and len(read[0]) == 4
        assert not any(w.startswith("marguerit") for w in read[0])
    # Every remembered word now in more rows than the cap: counted again, still found.
    _save(
        engine,
        settings,
        scope,
        *(MemoryIn(content=f"{base} number {i}", user_id="bob") for i in range(120)),
    )
    read.clear()
    assert _found(engine, settings, tenant.brain_id, "alice", text) == [made]
    if engine.dialect.name == "sqlite":
        assert len(read) == 2 and any(w.startswith("marguerit") for w in read[1])
