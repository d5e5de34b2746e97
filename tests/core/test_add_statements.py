"""What an add reads and writes in fewer statements, with the same outcome, on both stores
(an add's round trips are most of what PostgreSQL costs over SQLite: docs/benchmarks.md).

- One full-text search per unkeyed add, for the write gate and the contradiction check
  (core/memory/gate.py `_search`, `shared_candidates`): the gate asks for the owner's best
  matches of any key and keeps its own key's, and the check compares all of them. On
  PostgreSQL the two were separate statements over the same text; on SQLite the look-ahead
  shared them already, and a gate searching inside the transaction now does too.
- The echo guard's recall notes read with the brain's policy, in the widest window a policy
  allows, and cut to the policy's.
- On PostgreSQL, the user's row, the tags and the dates written by the memory's INSERT, and
  the brain's watches read in the changelog row's statement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.app import remember
from core.embeddings import get_embedder
from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from core.kernel.ids import new_id, now_ms
from core.kernel.scope import Scope
from core.memory import store
from core.memory.indexing import Indexer, document_text
from core.memory.models import MemoryIn
from core.memory.policy import set_policy
from core.retrieval import lexical, restatements
from tests.conftest import Tenant
from tests.statements import statements_sent


def _indexer(settings: Settings, *items: MemoryIn) -> Indexer:
    index = remember.indexer(get_embedder(settings.embedder), settings)
    index.prepare([document_text(i.title, i.key, i.tags, i.content) for i in items])
    return index


def _create(engine: Engine, settings: Settings, scope: Scope, *items: MemoryIn) -> list[Any]:
    """Through the write path the API takes, without the gate's look-ahead: the gate searches
    inside the write transaction, on either store."""
    index = _indexer(settings, *items)
    with transaction(engine) as conn:
        return [store.create(conn, scope, item, settings.limits, index) for item in items]


class _Lookups:
    """How many times an add searched the full-text index: the gate's search and the
    contradiction check's own."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate: list[str] = []
        self.check = 0
        gate_search = restatements.restatement_candidates
        check_search = lexical.candidates

        def gate_spy(conn: Any, text: str, where: list[str], *a: Any, **kw: Any) -> Any:
            self.gate.append("key" if any("gate_key" in w for w in where) else "any key")
            return gate_search(conn, text, where, *a, **kw)

        def check_spy(*a: Any, **kw: Any) -> Any:
            self.check += 1
            return check_search(*a, **kw)

        monkeypatch.setattr(restatements, "restatement_candidates", gate_spy)
        monkeypatch.setattr(lexical, "candidates", check_spy)


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> Callable[[], _Lookups]:
    return lambda: _Lookups(monkeypatch)


def _seed(engine: Engine, settings: Settings, scope: Scope) -> str:
    """An allergy, then more of the owner's notes than the check's recent ones, so only a
    search by words reaches the allergy."""
    [allergy] = _create(
        engine, settings, scope, MemoryIn(content="Dana is allergic to peanuts", user_id="dana")
    )
    filler = [
        MemoryIn(content=f"Dana visited museum number {n} with her cousin", user_id="dana")
        for n in range(12)
    ]
    _create(engine, settings, scope, *filler)
    return str(allergy["id"])


def test_an_unkeyed_add_searches_once_for_the_gate_and_the_check(
    engine: Engine, settings: Settings, tenant: Tenant, lookups: Callable[[], _Lookups]
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    allergy = _seed(engine, settings, scope)
    counted = lookups()
    [denial] = _create(
        engine, settings, scope, MemoryIn(content="Dana is not allergic to peanuts", user_id="dana")
    )
    assert [c["with_id"] for c in denial["conflicts"]] == [allergy]
    assert denial["gate"]["decision"] == "added"
    assert (counted.gate, counted.check) == (["any key"], 0)


def test_a_keyed_write_searches_its_key_and_the_check_searches_apart(
    engine: Engine, settings: Settings, tenant: Tenant, lookups: Callable[[], _Lookups]
) -> None:
    """A fact's restatement has its key: among the owner's matches of any key other memories
    could crowd it out, so its gate asks for the key alone, and the check for itself."""
    scope = Scope(tenant.brain_id, "agent")
    allergy = _seed(engine, settings, scope)
    counted = lookups()
    fact = MemoryIn(content="Dana is not allergic to peanuts", user_id="dana", key="allergies")
    [denial] = _create(engine, settings, scope, fact)
    assert [c["with_id"] for c in denial["conflicts"]] == [allergy]
    assert (counted.gate, counted.check) == (["key"], 1)


def test_the_gate_keeps_its_own_keys_matches_from_the_shared_search(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    """An unkeyed restatement reinforces the unkeyed note it restates, never a keyed memory
    with the same words, which the shared search also finds (and ranks alike)."""
    scope = Scope(tenant.brain_id, "agent")
    text = "Quillon repairs harpsichords in Ghent"
    [keyed] = _create(engine, settings, scope, MemoryIn(content=text, user_id="alice", key="job"))
    [alone] = _create(engine, settings, scope, MemoryIn(content=text + ".", user_id="alice"))
    assert alone["gate"]["decision"] == "added"  # the keyed fact is another key's
    [again] = _create(engine, settings, scope, MemoryIn(content=text + "!", user_id="alice"))
    assert again["gate"]["decision"] == "reinforced"
    assert again["id"] == alone["id"] != keyed["id"]


def test_a_batch_compares_each_item_with_the_ones_before_it(
    engine: Engine, settings: Settings, tenant: Tenant, lookups: Callable[[], _Lookups]
) -> None:
    """Each item's gate searches once, after the items before it were written in the same
    transaction, and the check finds a contradiction within the batch."""
    scope = Scope(tenant.brain_id, "agent")
    _seed(engine, settings, scope)
    counted = lookups()
    first, second = _create(
        engine,
        settings,
        scope,
        MemoryIn(content="Dana owns a pottery studio in Brooklyn", user_id="dana"),
        MemoryIn(content="Dana does not own a pottery studio", user_id="dana"),
    )
    assert first.get("conflicts") is None
    assert [c["with_id"] for c in second["conflicts"]] == [first["id"]]
    assert (counted.gate, counted.check) == (["any key", "any key"], 0)


@pytest.mark.parametrize("window", [900, 86_400])
def test_a_recall_note_is_an_echo_within_the_policys_window_only(
    engine: Engine, settings: Settings, tenant: Tenant, window: int
) -> None:
    """Read in the widest window a policy allows, with the policy itself, and kept to the
    policy's: a note of two hours ago counts for a day's window, not for 15 minutes'."""
    scope = Scope(tenant.brain_id, "agent")
    [shown] = _create(
        engine,
        settings,
        scope,
        MemoryIn(content="Alice is training for the Lyon marathon", user_id="alice"),
    )
    with transaction(engine) as conn:
        set_policy(
            conn, Scope(tenant.brain_id, "owner", role="owner"), {"echo_window_seconds": window}
        )
        conn.execute(
            text(
                "INSERT INTO memory_recalls (id, brain_id, principal, user_id, memory_ids, "
                "created_at) VALUES (:id, :brain, :principal, 'alice', :ids, :at)"
            ),
            {
                "id": new_id(),
                "brain": tenant.brain_id,
                "principal": scope.principal,
                "ids": f'["{shown["id"]}"]',
                "at": now_ms() - 2 * 3600 * 1000,
            },
        )
    with statements_sent(engine) as sent:
        [reply] = _create(
            engine,
            settings,
            scope,
            MemoryIn(content="The user is training for the Lyon marathon", user_id="alice"),
        )
    if window == 900:  # out of the window: a restatement, not an echo
        assert reply["gate"]["decision"] == "reinforced"
    else:
        assert reply["gate"]["decision"] == "recalled"
    assert reply["gate"]["memory_id"] == shown["id"]
    reads = [s for s in sent.statements if "memory_recalls" in s]
    assert len(reads) == 1 and "brain_policies" in reads[0]


def test_what_comes_with_a_memory_rides_on_its_writes_on_postgresql(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    """The user's row, the tags and the dates in the memory's INSERT, the watches read in the
    changelog row's statement (PostgreSQL); one by one on SQLite. The same rows either way."""
    scope = Scope(tenant.brain_id, "agent")
    data = MemoryIn(
        content="Bruno played the oboe in Vienna on 3 March 2024 and on 5 April 2024",
        user_id="bruno",
        tags=["music", "travel"],
    )
    with statements_sent(engine) as sent:
        [made] = _create(engine, settings, scope, data)
    alone = [
        s.split("(")[0].strip()
        for s in sent.statements
        if s.lstrip().startswith(
            (
                "INSERT INTO users",
                "INSERT INTO memory_tags",
                "INSERT INTO memory_dates",
                "SELECT id, event_types",
            )
        )
    ]
    postgres = engine.dialect.name == "postgresql"
    assert len(alone) == (0 if postgres else 4), alone
    with transaction(engine, write=False) as conn:
        values = {"brain": tenant.brain_id, "id": made["id"]}
        users = conn.execute(
            text("SELECT count(*) FROM users WHERE brain_id = :brain AND user_id = 'bruno'"),
            values,
        ).scalar()
        tags = conn.execute(
            text("SELECT tag FROM memory_tags WHERE brain_id = :brain AND memory_id = :id"),
            values,
        ).scalars()
        dates = conn.execute(
            text(
                "SELECT starts_at, ends_at FROM memory_dates WHERE brain_id = :brain "
                "AND memory_id = :id ORDER BY starts_at"
            ),
            values,
        ).all()
    assert users == 1
    assert sorted(tags) == ["music", "travel"]
    assert len(dates) == 2 and all(s is not None and e is not None and s < e for s, e in dates)
    assert made["tags"] == ["music", "travel"]
