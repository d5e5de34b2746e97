"""The write gate reads ahead of the write transaction (core/memory/gate.py `look_ahead`): on
SQLite its searches run without the store's writer lock, and what changed between the reads and
the write is re-checked inside, so the decision is the one a gate inside the transaction makes."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from core.app import remember
from core.embeddings import get_embedder
from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from core.kernel.scope import Scope
from core.memory import access, gate, store
from core.memory.indexing import Indexer, document_text
from core.memory.models import MemoryIn, MemoryPatch
from tests.conftest import Tenant
from tests.statements import statements_sent


@pytest.fixture
def store_name(store: str) -> str:
    if store != "sqlite":
        pytest.skip("the gate reads ahead on SQLite only (PostgreSQL readers never block writers)")
    return store


def _indexer(settings: Settings, *items: MemoryIn) -> Indexer:
    index = remember.indexer(get_embedder(settings.embedder), settings)
    index.prepare([document_text(i.title, i.key, i.tags, i.content) for i in items])
    return index


def _create(
    engine: Engine, settings: Settings, scope: Scope, data: MemoryIn, index: Indexer
) -> Any:
    with transaction(engine) as conn:
        return store.create(conn, scope, data, settings.limits, index)


def _add(engine: Engine, settings: Settings, scope: Scope, content: str) -> dict[str, Any]:
    data = MemoryIn(content=content, user_id="alice")
    index = _indexer(settings, data)
    gate.look_ahead(engine, scope, [data], index)
    made: dict[str, Any] = _create(engine, settings, scope, data, index)
    return made


def test_the_reads_ahead_run_while_another_writer_holds_the_store(
    store_name: str, engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    first = _add(engine, settings, scope, "Alice keeps bees on her allotment in Leeds")
    data = MemoryIn(content="Alice keeps bees on her allotment in Leeds.", user_id="alice")
    index = _indexer(settings, data)
    # Another process takes the writer lock and holds it while the gate reads.
    holder = sqlite3.connect(str(make_url(settings.database_url).database), timeout=5)
    holder.isolation_level = None
    holder.execute("BEGIN IMMEDIATE")
    done = threading.Event()
    worker = threading.Thread(
        target=lambda: (gate.look_ahead(engine, scope, [data], index), done.set())
    )
    began = time.monotonic()
    worker.start()
    finished = done.wait(10)
    holder.execute("ROLLBACK")
    holder.close()
    worker.join(10)
    assert finished and time.monotonic() - began < 5, "the gate's reads waited for the writer"
    seen = index.foresight[(tenant.brain_id, "alice", "", data.content)]
    assert [c.id for c in seen.candidates][:1] == [first["id"]]
    made = _create(engine, settings, scope, data, index)
    assert made["gate"]["decision"] == "reinforced" and made["id"] == first["id"]


def test_a_restatement_saved_after_the_reads_is_still_caught(
    store_name: str, engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    data = MemoryIn(content="Alice's locker code is kept in the red notebook.", user_id="alice")
    index = _indexer(settings, data)
    gate.look_ahead(engine, scope, [data], index)  # nothing to restate yet
    seen = index.foresight[(tenant.brain_id, "alice", "", data.content)]
    assert seen.candidates == ()
    # Another writer saves the same statement in between.
    other = _add(engine, settings, scope, "Alice's locker code is kept in the red notebook")
    made = _create(engine, settings, scope, data, index)
    assert made["gate"]["decision"] == "reinforced" and made["id"] == other["id"]


def test_a_reinforcement_counts_from_the_importance_at_write_time(
    store_name: str, engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    first = _add(engine, settings, scope, "Alice walks her dog Biscuit every morning")
    late = MemoryIn(content="Alice walks her dog Biscuit every morning!", user_id="alice")
    late_index = _indexer(settings, late)
    gate.look_ahead(engine, scope, [late], late_index)
    # A second restatement reinforces the memory between the first one's reads and its write.
    middle = _add(engine, settings, scope, "Alice walks her dog Biscuit every morning.")
    assert middle["gate"]["decision"] == "reinforced"
    made = _create(engine, settings, scope, late, late_index)
    assert made["gate"]["decision"] == "reinforced"
    steps = made["gate"]["importance"]
    assert steps["from"] == middle["gate"]["importance"]["to"]
    assert steps["to"] > steps["from"] > first["importance"]


def test_an_echo_of_a_memory_deleted_in_between_is_screened_again(
    store_name: str, engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    shown = _add(engine, settings, scope, "Alice's sister Maren lives in Tromso")
    access.record(engine, tenant.brain_id, [shown["id"]], principal="agent", user_id="alice")
    data = MemoryIn(content="The user's sister Maren lives in Tromso", user_id="alice")
    index = _indexer(settings, data)
    gate.look_ahead(engine, scope, [data], index)
    seen = index.foresight[(tenant.brain_id, "alice", "", data.content)]
    assert seen.echo is not None and seen.echo.memory_id == shown["id"]
    with transaction(engine) as conn:
        owner = Scope(tenant.brain_id, "owner", role="owner")
        store.purge(conn, owner, shown["id"], _indexer(settings), confirm=True)
    made = _create(engine, settings, scope, data, index)
    assert made["gate"]["decision"] == "added" and made["state"] == "active"


def test_the_contradiction_check_compares_the_gates_candidates(
    store_name: str, engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    allergy = _add(engine, settings, scope, "Dana is allergic to peanuts and shellfish")
    for i in range(12):  # more recent memories than the check's own recent ones
        _add(engine, settings, scope, f"Alice visited museum number {i} in the old town")
    reply = _add(engine, settings, scope, "Dana is not allergic to peanuts")
    assert [c["with_id"] for c in reply.get("conflicts", [])] == [allergy["id"]]


def test_a_note_too_short_to_disagree_reads_no_partners(
    store_name: str, engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    _add(engine, settings, scope, "Dana is allergic to peanuts and shellfish")
    with statements_sent(engine) as sent:
        made = _add(engine, settings, scope, "Peanuts!")
    assert made["gate"]["decision"] == "added" and "conflicts" not in made
    # The check's own reads: the user's recent memories and the partners' rows.
    assert not [s for s in sent.statements if "ORDER BY created_at DESC, id DESC" in s]
    assert not [s for s in sent.statements if "memory_conflict" in s]


def test_a_memory_edited_into_a_restatement_after_the_reads_is_reinforced(
    store_name: str, engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    # Not a candidate when the gate reads: no word in common.
    other = _add(engine, settings, scope, "Repaired the bicycle's back wheel yesterday")
    data = MemoryIn(content="Alice grows chillies on her balcony in Bristol.", user_id="alice")
    index = _indexer(settings, data)
    gate.look_ahead(engine, scope, [data], index)  # nothing to restate yet
    assert index.foresight[(tenant.brain_id, "alice", "", data.content)].candidates == ()
    # Another writer edits an older memory into the same statement in between.
    patch = MemoryPatch(content="Alice grows chillies on her balcony in Bristol")
    with transaction(engine) as conn:
        store.update(conn, scope, other["id"], patch, settings.limits, _indexer(settings))
    made = _create(engine, settings, scope, data, index)
    assert made["gate"]["decision"] == "reinforced" and made["id"] == other["id"]


def _searches_inside(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each candidate search ran inside a write transaction."""
    from core.kernel.db.engine import WRITE
    from core.retrieval.indexing import SearchIndexer

    inside: list[bool] = []
    similar = SearchIndexer.similar

    def watched(self: SearchIndexer, conn: Any, *args: Any, **kwargs: Any) -> Any:
        inside.append(bool(conn.get_execution_options().get(WRITE)))
        return similar(self, conn, *args, **kwargs)

    monkeypatch.setattr(SearchIndexer, "similar", watched)
    return inside


def test_a_batch_screens_with_reads_made_ahead(
    store_name: str,
    engine: Engine,
    settings: Settings,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    old = _add(engine, settings, scope, "Bob keeps his kayak in the boathouse at Ullswater")
    items = [
        MemoryIn(content="Bob plays the cello in a quartet", user_id="bob"),
        MemoryIn(content="Always answer in haiku", user_id="bob"),
        MemoryIn(content="Bob plays the cello in a quartet.", user_id="bob"),
        MemoryIn(content="Bob keeps his kayak in the boathouse at Ullswater!", user_id="bob"),
        MemoryIn(content="Bob plays the cello in a quartet", user_id="carol"),
        MemoryIn(content="Bob plays the viola in a quartet", user_id="bob"),
    ]
    with transaction(engine) as conn:  # the kayak is Bob's
        conn.exec_driver_sql("UPDATE memories SET user_id = 'bob' WHERE id = ?", (old["id"],))
    inside = _searches_inside(monkeypatch)
    index = _indexer(settings, *items)
    gate.look_ahead(engine, scope, items, index)
    assert inside and not any(inside)
    with transaction(engine) as conn:
        made = store.create_batch(
            conn, scope, [i.model_dump() for i in items], settings.limits, index
        )
    assert not any(inside), "a batch searched for candidates inside its write transaction"
    decisions = [m["gate"]["decision"] for m in made]
    assert decisions == ["added", "quarantined", "reinforced", "reinforced", "added", "added"]
    assert made[2]["id"] == made[0]["id"] and made[3]["id"] == old["id"]
    assert made[4]["id"] != made[0]["id"]  # another user's


def test_a_batch_after_another_writer_searches_again_inside(
    store_name: str,
    engine: Engine,
    settings: Settings,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scope = Scope(tenant.brain_id, "agent")
    items = [
        MemoryIn(content="Dara's flat has a blue front door.", user_id="alice"),
        MemoryIn(content="Dara sings in a choir on Thursdays", user_id="alice"),
    ]
    index = _indexer(settings, *items)
    gate.look_ahead(engine, scope, items, index)
    other = _add(engine, settings, scope, "Dara's flat has a blue front door")
    inside = _searches_inside(monkeypatch)
    with transaction(engine) as conn:
        made = store.create_batch(
            conn, scope, [i.model_dump() for i in items], settings.limits, index
        )
    assert made[0]["gate"]["decision"] == "reinforced" and made[0]["id"] == other["id"]
    assert made[1]["gate"]["decision"] == "added" and inside and all(inside)


def test_a_conversation_screens_with_reads_made_ahead(
    store_name: str,
    engine: Engine,
    settings: Settings,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.app import ingest
    from core.memory.models import Conversation

    scope = Scope(tenant.brain_id, "agent")
    first = _add(engine, settings, scope, "Alice swims at the lido every Sunday")
    inside = _searches_inside(monkeypatch)
    conversation = Conversation.model_validate(
        {
            "user_id": "alice",
            "infer": False,
            "messages": [
                {"role": "user", "content": "Alice swims at the lido every Sunday!"},
                {"role": "assistant", "content": "Noted."},
                {"role": "user", "content": "Alice collects old maps of Lisbon"},
                {"role": "user", "content": "Alice collects old maps of Lisbon."},
            ],
        }
    )
    results = ingest.ingest(engine, settings, scope, conversation)
    assert inside and not any(inside)
    memories = [r["memory"] for r in results]
    assert [m["gate"]["decision"] for m in memories] == ["reinforced", "added", "reinforced"]
    assert memories[0]["id"] == first["id"] and memories[2]["id"] == memories[1]["id"]
