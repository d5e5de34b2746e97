"""Conversation jobs hold the conversation and the memories made from it: the maintenance
sweep deletes them a week after their last change, on both stores."""

from __future__ import annotations

from sqlalchemy import Engine, text

from core.app import jobs
from core.kernel.db.engine import transaction
from core.kernel.ids import now_ms
from core.kernel.scope import Scope
from core.memory.models import Conversation
from tests.conftest import Tenant


def test_jobs_past_their_week_are_deleted(engine: Engine, tenant: Tenant) -> None:
    scope = Scope(brain_id=tenant.brain_id, principal="test")
    conversation = Conversation.model_validate(
        {"messages": [{"role": "user", "content": "I moved to Lyon"}], "user_id": "alice"}
    )
    with transaction(engine) as conn:
        old = jobs.create(conn, scope, conversation)["id"]
        recent = jobs.create(conn, scope, conversation)["id"]
        conn.execute(
            text("UPDATE ingest_jobs SET updated_at = :at WHERE id = :id"),
            {"at": now_ms() - jobs.KEEP_FINISHED_MS - 1, "id": old},
        )
    with transaction(engine) as conn:
        assert jobs.purge_old(conn) >= 1
    with transaction(engine, write=False) as conn:
        left = set(conn.execute(text("SELECT id FROM ingest_jobs")).scalars())
    assert old not in left and recent in left
