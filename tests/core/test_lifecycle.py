"""core/memory/lifecycle.py on both stores: every state change writes its history row and its
changelog entry with it, in the caller's transaction, so a rolled-back change leaves neither."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from core.kernel.ids import now_ms
from core.kernel.scope import Scope
from core.memory import lifecycle
from core.memory import store as memories
from core.memory.models import MemoryIn
from core.retrieval.indexing import SearchIndexer
from tests.conftest import Tenant

INDEX = SearchIndexer(None)


class Rollback(Exception):
    """Raised inside a transaction to roll it back."""


def _save(engine: Engine, settings: Settings, scope: Scope, content: str) -> Any:
    with transaction(engine) as conn:
        saved = memories.create(
            conn, scope, MemoryIn(content=content), settings.limits, INDEX, screen=False
        )
        return memories._fetch(conn, scope, saved["id"])


def _records(conn: Connection, memory_id: str) -> tuple[list[str], list[str]]:
    """The memory's history events and changelog event types, oldest first."""
    events = conn.execute(
        text("SELECT event FROM memory_history WHERE memory_id = :m ORDER BY created_at, id"),
        {"m": memory_id},
    ).scalars()
    entries = conn.execute(
        text("SELECT event_type FROM changelog WHERE entity_id = :m ORDER BY created_at, id"),
        {"m": memory_id},
    ).scalars()
    return list(events), list(entries)


def _state(conn: Connection, memory_id: str) -> tuple[str, str | None]:
    row = conn.execute(
        text("SELECT state, superseded_by FROM memories WHERE id = :m"), {"m": memory_id}
    ).one()
    return row.state, row.superseded_by


@pytest.mark.parametrize(
    ("target", "event", "entry"),
    [
        ("archived", "ARCHIVE", "memory.archived"),
        ("deleted", "DELETE", "memory.deleted"),
    ],
)
def test_a_state_change_commits_and_rolls_back_with_its_records(
    engine: Engine, settings: Settings, tenant: Tenant, target: str, event: str, entry: str
) -> None:
    scope = Scope(tenant.brain_id, "test")
    row = _save(engine, settings, scope, f"to be {target}")
    with pytest.raises(Rollback), transaction(engine) as conn:
        lifecycle.set_state(conn, scope, row, target, INDEX)
        assert _state(conn, row.id)[0] == target
        raise Rollback
    with transaction(engine, write=False) as conn:
        assert _state(conn, row.id) == ("active", None)
        assert _records(conn, row.id) == (["ADD"], ["memory.created"])
    with transaction(engine) as conn:
        lifecycle.set_state(conn, scope, row, target, INDEX, actor_id="agent-7")
    with transaction(engine, write=False) as conn:
        assert _state(conn, row.id)[0] == target
        assert _records(conn, row.id) == (["ADD", event], ["memory.created", entry])
        actor = conn.execute(
            text("SELECT actor_id FROM changelog WHERE entity_id = :m AND event_type = :e"),
            {"m": row.id, "e": entry},
        ).scalar()
        assert actor == "agent-7"


def test_a_batch_archive_records_only_what_it_archived(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "test")
    rows = [_save(engine, settings, scope, f"idle note {i}") for i in range(3)]
    with transaction(engine) as conn:
        lifecycle.set_state(conn, scope, rows[0], "deleted", INDEX)
    with transaction(engine) as conn:
        done = lifecycle.archive(
            conn, scope, rows, now=now_ms(), reason={"forget": True}, index=INDEX
        )
    assert done == [rows[1].id, rows[2].id]
    with transaction(engine, write=False) as conn:
        assert _state(conn, rows[0].id)[0] == "deleted"
        assert _records(conn, rows[0].id) == (
            ["ADD", "DELETE"],
            ["memory.created", "memory.deleted"],
        )
        for row in rows[1:]:
            assert _state(conn, row.id)[0] == "archived"
            assert _records(conn, row.id) == (
                ["ADD", "ARCHIVE"],
                ["memory.created", "memory.archived"],
            )


def test_losing_a_conflict_supersedes_links_and_records_in_one_go(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = Scope(tenant.brain_id, "test")
    loser = _save(engine, settings, scope, "The launch is on Monday")
    winner = _save(engine, settings, scope, "The launch is on Friday")
    with pytest.raises(Rollback), transaction(engine) as conn:
        lifecycle.lose_conflict(
            conn, scope, loser, winner, conflict_id="c1", mode="demote", now=now_ms(), index=INDEX
        )
        raise Rollback
    with transaction(engine, write=False) as conn:
        assert _state(conn, loser.id) == ("active", None)
        assert _records(conn, loser.id) == (["ADD"], ["memory.created"])
    with transaction(engine) as conn:
        archived = lifecycle.lose_conflict(
            conn, scope, loser, winner, conflict_id="c1", mode="archive", now=now_ms(), index=INDEX
        )
    assert archived
    with transaction(engine, write=False) as conn:
        assert _state(conn, loser.id) == ("archived", winner.id)
        assert _records(conn, loser.id) == (
            ["ADD", "ARCHIVE"],
            ["memory.created", "memory.superseded"],
        )
        links = conn.execute(
            text("SELECT from_id, to_id, relation FROM memory_links WHERE to_id = :m"),
            {"m": loser.id},
        ).all()
        assert [tuple(link) for link in links] == [(winner.id, loser.id, "supersedes")]
